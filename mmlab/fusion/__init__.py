"""Fusion zoo: every family behind one registry.

`build_fusion(name, input_dims, output_dim, **options)` builds a module whose
`forward(tokens, masks=None)` maps `dict[str, (B, N_m, D_m)]` to `(B, output_dim)`.
A missing modality is a `ValueError`; pass zeros (`drop_modality`) to model absence.
Importing this package registers the built-in families below; each declares the options a tuner may vary
(`fusion_search_space(name)`, see `mmlab.fusion.search_space`).
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
    simbamm,
    single_stream,
    tensor_fusion,
)
from mmlab.fusion.base import Fusion, drop_modality, masked_mean, modality_dropout
from mmlab.fusion.contract import FusionContractError, check_fusion
from mmlab.fusion.registry import (
    available_fusions,
    build_fusion,
    fusion_options,
    fusion_search_space,
    register_fusion,
    unregister_fusion,
)
from mmlab.fusion.search_space import Choice, FloatRange, IntRange, check_search_space

__all__ = [
    "Choice", "FloatRange", "Fusion", "FusionContractError", "IntRange", "available_fusions", "build_fusion",
    "check_fusion", "check_search_space", "drop_modality", "fusion_options", "fusion_search_space", "masked_mean",
    "modality_dropout", "register_fusion", "unregister_fusion",
]
