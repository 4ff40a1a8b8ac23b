"""Contrastive alignment: losses (and, from the encoders work, the dual-encoder model)."""
from mmlab.align.losses import info_nce, siglip_loss

__all__ = ["info_nce", "siglip_loss"]
