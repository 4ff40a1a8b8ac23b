"""Fused, tiled Triton kernels (one file per op); Triton is imported only when a kernel runs.

`info_nce` and `siglip_loss` take `backend="auto"|"triton"|"torch"`: auto uses the kernels for CUDA
tensors of more than 4096 rows (`_launch.AUTO_MAX_REFERENCE_BATCH`; smaller batches ran faster through the
reference on an H100) and the `mmlab.align` references otherwise. Set TRITON_INTERPRET=1 before the first kernel
call to run the kernels on a CPU through the Triton interpreter (slow; for tests and lessons).
"""
from mmlab.kernels._launch import Blocks
from mmlab.kernels.info_nce import info_nce
from mmlab.kernels.siglip import siglip_loss

__all__ = ["Blocks", "info_nce", "siglip_loss"]
