"""Contrastive alignment: the reference losses and the dual-encoder model."""
from mmlab.align.losses import info_nce, siglip_loss
from mmlab.align.model import DualEncoder, LearnableTemperature, contrastive_loss

__all__ = ["DualEncoder", "LearnableTemperature", "contrastive_loss", "info_nce", "siglip_loss"]
