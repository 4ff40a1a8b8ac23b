"""`check_fusion`: run the fusion contract on a registered fusion, for people prototyping their own."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch
from torch import Tensor

from mmlab.fusion.base import drop_modality
from mmlab.fusion.registry import build_fusion


class FusionContractError(AssertionError):
    """A fusion failed one check of `check_fusion`; `check` names it and `fusion` the fusion.

    Raised explicitly (unlike `assert`, it survives `python -O`); an AssertionError subclass."""

    def __init__(self, fusion: str, check: str, detail: str):
        super().__init__(f"fusion {fusion!r} fails check {check!r}: {detail}")
        self.fusion, self.check = fusion, check


@contextmanager
def _check(fusion: str, check: str, passed: list[str]) -> Iterator[Callable[[bool, str], None]]:
    """Run one check: it fails on `expect(False, detail)` or on any exception the fusion raises."""

    def expect(ok: bool, detail: str) -> None:
        if not ok:
            raise FusionContractError(fusion, check, detail)

    try:
        yield expect
    except FusionContractError:
        raise
    except Exception as e:
        raise FusionContractError(fusion, check, f"raised {type(e).__name__}: {e}") from e
    passed.append(check)


def _non_finite(shape: torch.Size) -> Tensor:
    """NaN, +inf, -inf, NaN, ... in the given shape."""
    values = torch.tensor([float("nan"), float("inf"), float("-inf")])
    return values[torch.arange(shape.numel()) % 3].view(shape)


def check_fusion(name: str, input_dims: Mapping[str, int] | None = None, output_dim: int = 5,
                 **options) -> list[str]:
    """Build fusion `name` (with `options`) and check the fusion contract, in this order:

    - output shape: a batch of 3 gives (3, output_dim);
    - gradients reach every modality: after one Adam step on the fusion's parameters (so gates
      initialised closed, as in Flamingo, have opened), every modality's tokens get a non-zero gradient;
    - gradients reach every parameter: every trainable parameter gets a gradient;
    - variable token counts: 1 and 9 tokens (one more per further modality) work;
    - masked tokens ignored: changing masked-out tokens does not change the output;
    - NaN and inf in masked tokens ignored: with NaN/inf there the output stays finite and equal;
    - missing modality raises ValueError;
    - empty batch raises ValueError: a batch of 0 samples is an error in every fusion (as `Fusion.check_inputs`
      does), not a (0, output_dim) output;
    - zeroing a modality changes the output (`drop_modality`, each modality in turn).

    The last six run in eval mode without gradients. Inputs come from a local generator, and the whole
    check runs under `torch.random.fork_rng` (the fusion's initialisation seeded there), so the result is
    deterministic and the caller's random state is left as it was. Raises `FusionContractError` naming
    the first failed check; returns the names of the checks, all passed."""
    input_dims = dict(input_dims or {"image": 12, "text": 8})
    g = torch.Generator().manual_seed(0)
    passed: list[str] = []

    def check(what: str):
        return _check(name, what, passed)

    def tokens(batch: int, n: int, grad: bool = False) -> dict[str, Tensor]:
        return {m: torch.randn(batch, n + i, d, generator=g, requires_grad=grad)
                for i, (m, d) in enumerate(input_dims.items())}

    with torch.random.fork_rng(devices=[]):  # init and any dropout draw from this forked CPU generator
        torch.default_generator.manual_seed(0)
        fusion = build_fusion(name, input_dims, output_dim, **options).train()
        x = tokens(3, 4, grad=True)
        with check("output shape") as expect:
            out = fusion(x)
            expect(tuple(out.shape) == (3, output_dim), f"output shape {tuple(out.shape)}, expected (3, {output_dim})")
        with check("gradients reach every modality") as expect:
            params = [p for p in fusion.parameters() if p.requires_grad]
            out.square().sum().backward()
            if params:
                torch.optim.Adam(params, lr=1e-2).step()
                fusion.zero_grad()
            x = tokens(3, 4, grad=True)
            fusion(x).square().sum().backward()
            dead = [m for m, t in x.items() if t.grad is None or not bool(t.grad.abs().sum() > 0)]
            expect(not dead, f"no gradient reaches {dead}, even after one optimiser step")
        with check("gradients reach every parameter") as expect:
            unused = [n for n, p in fusion.named_parameters() if p.requires_grad and p.grad is None]
            expect(not unused, f"parameters {unused} get no gradient (unused parameters)")

        fusion.eval()
        with torch.no_grad():
            with check("variable token counts") as expect:
                for n in (1, 9):
                    shape = tuple(fusion(tokens(2, n)).shape)
                    expect(shape == (2, output_dim), f"with {n}+ tokens the output is {shape}, not (2, {output_dim})")
            x = tokens(2, 5)
            masks = {m: torch.arange(t.shape[1]) < torch.tensor([[2], [t.shape[1]]]) for m, t in x.items()}  # (2, N)

            def masked_out(fill: Callable[[torch.Size], Tensor]) -> dict[str, Tensor]:
                return {m: torch.where(masks[m][..., None], t, fill(t.shape)) for m, t in x.items()}

            with check("masked tokens ignored") as expect:
                ref = fusion(x, masks)
                changed = fusion(masked_out(lambda shape: 50 * torch.randn(shape, generator=g)), masks)
                expect(torch.allclose(ref, changed, atol=1e-5), "changing masked-out tokens changes the output")
            with check("NaN and inf in masked tokens ignored") as expect:
                out = fusion(masked_out(_non_finite), masks)
                expect(bool(torch.isfinite(out).all()), "NaN/inf in masked-out tokens makes the output non-finite")
                expect(torch.allclose(ref, out, atol=1e-5), "NaN/inf in masked-out tokens changes the output")
            with check("missing modality raises ValueError") as expect:
                first = next(iter(input_dims))
                try:
                    fusion({m: t for m, t in x.items() if m != first})
                except ValueError:
                    pass
                else:
                    expect(False, f"tokens without {first!r} gave an output")
            with check("empty batch raises ValueError") as expect:
                try:
                    empty = fusion({m: t[:0] for m, t in x.items()})  # (0, N_m, D_m) each
                except ValueError:
                    pass
                else:
                    expect(False, f"a batch of 0 samples gave an output of shape {tuple(empty.shape)}")
            with check("zeroing a modality changes the output") as expect:
                full = fusion(x)
                ignored = [m for m in x if torch.allclose(full, fusion(drop_modality(x, m)), atol=1e-6)]
                expect(not ignored, f"zeroing {ignored} leaves the output unchanged")
    return passed
