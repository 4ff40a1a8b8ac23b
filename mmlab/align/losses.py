"""Contrastive losses (pure PyTorch references): symmetric InfoNCE (CLIP) and SigLIP.

They live beside their kernels (`mmlab.kernels.info_nce`, `mmlab.kernels.siglip`), which fall back to them;
here they are the alignment lesson's names. Both materialise the (B, B) logits: clear, and the ground truth.
"""
from mmlab.kernels.info_nce import info_nce_reference as info_nce
from mmlab.kernels.siglip import siglip_loss_reference as siglip_loss

__all__ = ["info_nce", "siglip_loss"]
