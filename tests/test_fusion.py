"""Every registered fusion passes `check_fusion`; each of its checks catches a fusion broken that way;
what it does not check (padded batch == unpadded samples, error messages, the registry); options, dtypes,
empty batches and devices: tests/test_fusion_options.py."""
import pytest
import torch
from torch import nn

from mmlab.fusion import (
    Fusion,
    FusionContractError,
    available_fusions,
    build_fusion,
    check_fusion,
    drop_modality,
    masked_mean,
    modality_dropout,
    register_fusion,
    unregister_fusion,
)

DIMS = {"image": 12, "text": 8}
BUILTIN = [
    "bottleneck", "cross_attention", "early", "film", "flamingo", "gated", "late", "lmf", "perceiver",
    "single_stream", "tensor",
]
CHECKS = [
    "output shape", "gradients reach every modality", "gradients reach every parameter", "variable token counts",
    "masked tokens ignored", "NaN and inf in masked tokens ignored", "missing modality raises ValueError",
    "empty batch raises ValueError", "zeroing a modality changes the output",
]
OPEN_GATES = {"flamingo": {"gate_init": 0.5}}  # at init Flamingo ignores the context, its masks included


pytestmark = pytest.mark.usefixtures("one_thread")


def make_tokens(batch=3, n_image=7, n_text=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(batch, n_image, 12, generator=g), "text": torch.randn(batch, n_text, 8, generator=g)}


def build(name, dims=DIMS, out=5, **options):
    torch.manual_seed(0)
    return build_fusion(name, dims, out, **options).eval()


def test_all_families_registered():
    assert set(BUILTIN) <= set(available_fusions())


@pytest.mark.parametrize("dims", [DIMS, {**DIMS, "audio": 6}], ids=["2 modalities", "3 modalities"])
@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_fusions_pass_the_contract(name, dims):
    assert check_fusion(name, dims, output_dim=3) == CHECKS


@pytest.mark.parametrize("name", BUILTIN)
def test_padded_batch_equals_each_unpadded_sample(name):
    fusion = build(name, **OPEN_GATES.get(name, {}))
    tokens = make_tokens(batch=4, n_image=7, n_text=6)
    lengths = {"image": torch.tensor([7, 3, 1, 5]), "text": torch.tensor([2, 6, 4, 1])}
    masks = {m: torch.arange(tokens[m].shape[1])[None] < lengths[m][:, None] for m in tokens}
    with torch.no_grad():
        padded = fusion(tokens, masks)
        for i in range(4):
            alone = fusion({m: tokens[m][i:i + 1, : int(lengths[m][i])] for m in tokens})
            torch.testing.assert_close(padded[i:i + 1], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", BUILTIN)
def test_missing_modality_error_names_it(name):
    tokens = make_tokens()
    del tokens["text"]
    with pytest.raises(ValueError, match="text"):
        build(name)(tokens)


def test_flamingo_closed_gate_ignores_context_at_init():
    fusion = build("flamingo").train()  # query: "text"
    tokens = {m: t.requires_grad_() for m, t in make_tokens().items()}
    out = fusion(tokens)
    torch.testing.assert_close(out, fusion(drop_modality(tokens, "image")))
    out.square().sum().backward()
    assert torch.all(tokens["image"].grad == 0) and tokens["text"].grad.abs().sum() > 0
    assert fusion.gates() == [(0.0, 0.0)]  # check_fusion passes it all the same: it takes one step first


def test_bad_inputs_are_clear_errors():
    fusion = build("early")
    tokens = make_tokens()
    with pytest.raises(ValueError, match="width 9"):
        fusion({**tokens, "text": torch.randn(3, 5, 9)})
    with pytest.raises(ValueError, match="batch size"):
        fusion({**tokens, "text": torch.randn(2, 5, 8)})
    with pytest.raises(ValueError, match="unexpected modalities"):
        fusion({**tokens, "audio": torch.randn(3, 5, 8)})
    with pytest.raises(TypeError, match=r"tokens\['text'\] must be a torch.Tensor"):
        fusion({**tokens, "text": tokens["text"].tolist()})
    with pytest.raises(TypeError, match="floating point"):
        fusion({**tokens, "text": tokens["text"].long()})
    with pytest.raises(TypeError, match=r"masks\['text'\] must be bool or integer"):
        fusion(tokens, {"text": torch.ones(3, 5)})
    with pytest.raises(ValueError, match=r"masks\['text'\] must have shape"):
        fusion(tokens, {"text": torch.ones(3, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"masks\['text'\] row 1 has no real tokens"):
        fusion(tokens, {"text": torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])})
    with pytest.raises(ValueError, match="unknown modalities"):
        fusion(tokens, {"audio": torch.ones(3, 5, dtype=torch.bool)})
    int_mask = torch.tensor([[1, 1, 0, 0, 0]] * 3)
    torch.testing.assert_close(fusion(tokens, {"text": int_mask}), fusion(tokens, {"text": int_mask.bool()}))
    with pytest.raises(TypeError, match="input_dims must map"):
        Fusion([("image", 4)], 2)
    with pytest.raises(TypeError, match=r"input_dims\['image'\] must be a positive integer"):
        build_fusion("early", {"image": 4.0}, 2)
    with pytest.raises(ValueError, match="output_dim must be a positive integer"):
        build_fusion("early", DIMS, 0)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        build_fusion("cross_attention", {"image": 4}, 2)
    with pytest.raises(ValueError, match="query modality 'audio'"):
        build_fusion("cross_attention", DIMS, 2, query="audio")


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register_fusion("early")(Fusion)
    with pytest.raises(KeyError, match="available: .*early"):
        build_fusion("no_such_fusion", DIMS, 2)


def test_register_custom_fusion_joins_registry():
    @register_fusion("test_max_pool")
    class MaxPool(Fusion):
        def __init__(self, input_dims, output_dim):
            super().__init__(input_dims, output_dim)
            self.head = torch.nn.Linear(sum(input_dims.values()), output_dim)

        def forward(self, tokens, masks=None):
            tokens, masks = self.check_inputs(tokens, masks)
            pooled = [tokens[m].masked_fill(~masks[m][..., None], -1e9).amax(1) for m in self.modalities]
            return self.head(torch.cat(pooled, -1))

    try:
        assert "test_max_pool" in available_fusions()
        assert build_fusion("test_max_pool", DIMS, 4)(make_tokens()).shape == (3, 4)
    finally:
        unregister_fusion("test_max_pool")
    assert "test_max_pool" not in available_fusions()


def test_late_learned_weights_and_gated_values():
    late = build("late", combine="learned")
    assert torch.allclose(late.modality_weights().sum(), torch.tensor(1.0))
    gated = build("gated")
    gates = gated.gate_values(make_tokens())
    assert gates.shape == (3, 2) and ((gates > 0) & (gates < 1)).all()


def test_modality_dropout_never_drops_everything():
    tokens = {m: torch.ones(500, 2, 3) for m in ("a", "b")}
    out = modality_dropout(tokens, p=0.9, generator=torch.Generator().manual_seed(0))
    kept = torch.stack([out[m].flatten(1).any(1) for m in out], 1)  # (B, M)
    assert kept.any(1).all()
    dropped_fraction = 1 - kept.float().mean()
    assert 0.3 < dropped_fraction < 0.6  # most samples keep exactly one modality at p=0.9
    assert modality_dropout(tokens, 0.0) == tokens
    with pytest.raises(ValueError, match="dropout p"):
        modality_dropout(tokens, 1.0)


def test_check_fusion_is_deterministic_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    assert check_fusion("early") == check_fusion("early") == CHECKS
    assert torch.equal(torch.get_rng_state(), state)


class Reference(Fusion):
    """A fusion that passes every check: masked mean per modality, concatenated, one Linear.
    Each subclass below breaks exactly one check."""

    def __init__(self, input_dims, output_dim):
        super().__init__(input_dims, output_dim)
        self.head = nn.Linear(sum(self.input_dims.values()), output_dim)

    def pool(self, x, mask):
        return masked_mean(x, mask)

    def forward(self, tokens, masks=None):
        tokens, masks = self.check_inputs(tokens, masks)
        return self.head(torch.cat([self.pool(tokens[m], masks[m]) for m in self.modalities], dim=-1))


class WrongWidth(Reference):
    def forward(self, tokens, masks=None):
        return super().forward(tokens, masks)[:, 1:]


class DetachesText(Reference):
    def forward(self, tokens, masks=None):
        return super().forward({**tokens, "text": tokens["text"].detach()}, masks)


class UnusedParameter(Reference):
    def __init__(self, input_dims, output_dim):
        super().__init__(input_dims, output_dim)
        self.unused = nn.Linear(2, 2)


class FixedPosition(Reference):
    def pool(self, x, mask):
        return x[:, 3]  # assumes at least 4 tokens


class IgnoresMasks(Reference):
    def pool(self, x, mask):
        return x.mean(1)


class MultipliesByMask(Reference):
    def pool(self, x, mask):
        m = mask[..., None].to(x.dtype)
        return (x * m).sum(1) / m.sum(1)  # 0 * NaN = NaN


class NoInputCheck(Reference):
    def forward(self, tokens, masks=None):
        masks = masks or {}
        return self.head(torch.cat([masked_mean(x, masks.get(m)) for m, x in tokens.items()], dim=-1))


class AcceptsEmptyBatch(Reference):
    def forward(self, tokens, masks=None):
        if all(isinstance(t, torch.Tensor) and t.shape[0] == 0 for t in tokens.values()):
            return torch.zeros(0, self.output_dim)  # (0, output_dim) instead of the contract's ValueError
        return super().forward(tokens, masks)


class TextOnlyInTraining(Reference):
    def forward(self, tokens, masks=None):
        return super().forward(tokens if self.training else drop_modality(tokens, "text"), masks)


BROKEN = {
    "output shape": WrongWidth,
    "gradients reach every modality": DetachesText,
    "gradients reach every parameter": UnusedParameter,
    "variable token counts": FixedPosition,
    "masked tokens ignored": IgnoresMasks,
    "NaN and inf in masked tokens ignored": MultipliesByMask,
    "missing modality raises ValueError": NoInputCheck,
    "empty batch raises ValueError": AcceptsEmptyBatch,
    "zeroing a modality changes the output": TextOnlyInTraining,
}


def test_every_check_has_a_broken_fusion_and_the_reference_passes():
    assert list(BROKEN) == CHECKS
    register_fusion("test_reference")(Reference)
    try:
        assert check_fusion("test_reference") == CHECKS
    finally:
        unregister_fusion("test_reference")


@pytest.mark.parametrize("check", CHECKS)
def test_check_fusion_names_the_failed_check(check):
    register_fusion("test_broken")(BROKEN[check])
    try:
        with pytest.raises(FusionContractError, match=f"fusion 'test_broken' fails check '{check}'") as info:
            check_fusion("test_broken")
    finally:
        unregister_fusion("test_broken")
    assert info.value.check == check and info.value.fusion == "test_broken"
    assert isinstance(info.value, AssertionError)


def test_the_fusion_package_imports_only_layers_validation_and_itself():
    """mmlab.fusion holds the modules, registry, contract and search spaces; the benchmark lives in fusion_bench."""
    import ast
    from pathlib import Path

    allowed = ("mmlab.encoders.layers", "mmlab.validation", "mmlab.fusion")
    root = Path(__file__).resolve().parents[1] / "mmlab" / "fusion"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name == "mmlab" or name.startswith("mmlab."):
                    assert name.startswith(allowed), f"{path.name} imports {name}"
