"""Fused, tiled Triton kernels of the contrastive losses; Triton is imported only when a kernel runs.

    info_nce.py           InfoNCE: the PyTorch reference (and a chunked version), autograd, public `info_nce`
    siglip.py             SigLIP: the PyTorch reference, autograd, public `siglip_loss`
    contrastive_tiles.py  the @triton.jit kernels both losses share (imported on the first launch)
    launch.py             tile sizes (`Blocks`), backend dispatch and the kernel launchers (a public API)

`info_nce` and `siglip_loss` take `backend="auto"|"triton"|"torch"`: auto uses the kernels for CUDA tensors of
more than `launch.AUTO_MAX_REFERENCE_BATCH` rows (below that the reference measured faster, see
benchmarks/results/contrastive_loss_README.md) and the PyTorch references otherwise. `mmlab.align` re-exports
the references; this package imports nothing above it. Set TRITON_INTERPRET=1 before the first kernel call to
run the kernels on a CPU through the Triton interpreter (slow; for tests and lessons).
"""
from mmlab.kernels.info_nce import info_nce
from mmlab.kernels.launch import Blocks
from mmlab.kernels.siglip import siglip_loss

__all__ = ["Blocks", "info_nce", "siglip_loss"]
