"""Vision-language pretraining: the objectives (MLM masking, MAE masking and loss, ITM with hard negatives) and the
models (a fusion encoder, a co-attention encoder, a multiway transformer, a masked autoencoder)."""
from mmlab.pretrain.coattention import CoAttentionEncoder
from mmlab.pretrain.config import CoAttentionConfig, FusionEncoderConfig, MAEConfig, MultiwayConfig
from mmlab.pretrain.fusion_encoder import FusionEncoder
from mmlab.pretrain.itm import ITMHead, hard_negatives, itm_loss, itm_pairs
from mmlab.pretrain.mae import MaskedAutoencoder, mae_loss
from mmlab.pretrain.masking import IGNORE_INDEX, mask_tokens, random_masking, restore
from mmlab.pretrain.multiway import MultiwayTransformer

__all__ = [
    "IGNORE_INDEX",
    "CoAttentionConfig",
    "CoAttentionEncoder",
    "FusionEncoder",
    "FusionEncoderConfig",
    "ITMHead",
    "MAEConfig",
    "MaskedAutoencoder",
    "MultiwayConfig",
    "MultiwayTransformer",
    "hard_negatives",
    "itm_loss",
    "itm_pairs",
    "mae_loss",
    "mask_tokens",
    "random_masking",
    "restore",
]
