"""Fusion zoo: every family behind one registry.

`build_fusion(name, input_dims, output_dim, **options)` builds a module whose
`forward(tokens, masks=None)` maps `dict[str, (B, N_m, D_m)]` to `(B, output_dim)`.
A missing modality is a `ValueError`; pass zeros (`drop_modality`) to model absence.
Importing this package registers the built-in families below.
"""
from mmlab.fusion import (  # noqa: F401  (importing registers each family)
    bottleneck,
    cross_attention,
    early,
    film,
    flamingo,
    gated,
    late,
    lmf,
    perceiver,
    single_stream,
    tensor_fusion,
)
from mmlab.fusion.base import Fusion, drop_modality, masked_mean, modality_dropout
from mmlab.fusion.contract import FusionContractError, check_fusion
from mmlab.fusion.registry import (
    available_fusions,
    build_fusion,
    fusion_options,
    register_fusion,
    unregister_fusion,
)

__all__ = [
    "Fusion", "FusionContractError", "available_fusions", "build_fusion", "check_fusion", "drop_modality",
    "fusion_options", "masked_mean", "modality_dropout", "register_fusion", "unregister_fusion",
]
