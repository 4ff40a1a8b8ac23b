"""`check_fusion`: run the fusion contract on a registered fusion, for people prototyping their own."""
from __future__ import annotations

from typing import Mapping

import torch

from mmlab.fusion.base import drop_modality
from mmlab.fusion.registry import build_fusion


def check_fusion(name: str, input_dims: Mapping[str, int] | None = None, output_dim: int = 5,
                 **options) -> dict[str, bool]:
    """Build fusion `name` and check: output shape, gradients reach every modality, variable token
    counts, masked tokens ignored, a missing modality is a ValueError. Raises AssertionError naming
    the first failed check; returns {check: True} when all pass."""
    input_dims = dict(input_dims or {"image": 12, "text": 8})
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    fusion = build_fusion(name, input_dims, output_dim, **options)

    def tokens(batch: int, n: int) -> dict[str, torch.Tensor]:
        return {m: torch.randn(batch, n + i, d, generator=g) for i, (m, d) in enumerate(input_dims.items())}

    results = {}
    x = {m: t.requires_grad_() for m, t in tokens(3, 4).items()}
    out = fusion(x)
    assert tuple(out.shape) == (3, output_dim), f"{name}: output shape {tuple(out.shape)}, expected (3, {output_dim})"
    results["output shape (B, output_dim)"] = True
    out.square().sum().backward()
    for m, t in x.items():
        assert t.grad is not None and t.grad.abs().sum() > 0, f"{name}: no gradient reaches modality {m!r}"
    results["gradients reach every modality"] = True
    fusion.eval()
    with torch.no_grad():
        for n in (1, 9):
            assert tuple(fusion(tokens(2, n)).shape) == (2, output_dim), f"{name}: fails with {n} tokens"
        results["variable token counts"] = True
        x = tokens(2, 5)
        masks = {m: torch.arange(t.shape[1])[None] < torch.tensor([[2], [t.shape[1]]]) for m, t in x.items()}
        changed = {m: torch.where(masks[m][..., None], t, 50 * torch.randn_like(t)) for m, t in x.items()}
        assert torch.allclose(fusion(x, masks), fusion(changed, masks), atol=1e-5), f"{name}: masked tokens change the output"
        results["masked tokens ignored"] = True
        try:
            fusion({m: t for m, t in x.items() if m != next(iter(input_dims))})
        except ValueError:
            results["missing modality -> ValueError"] = True
        else:
            raise AssertionError(f"{name}: a missing modality did not raise ValueError")
        first = next(iter(input_dims))
        results["dropping a modality (zeros) changes the output"] = not torch.allclose(
            fusion(x), fusion(drop_modality(x, first)), atol=1e-6)
    return results
