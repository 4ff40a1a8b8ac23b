"""Contrastive alignment: the reference losses, the dual-encoder model, and `distributed` (the losses across
processes: `mmlab.align.distributed.info_nce`, `siglip_loss`, `gather_with_grad`)."""
from mmlab.align import distributed
from mmlab.align.losses import info_nce, siglip_loss
from mmlab.align.model import DualEncoder, LearnableTemperature, contrastive_loss

__all__ = ["DualEncoder", "LearnableTemperature", "contrastive_loss", "distributed", "info_nce", "siglip_loss"]
