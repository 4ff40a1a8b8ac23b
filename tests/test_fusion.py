"""Every registered fusion: shapes, gradients, masks, variable lengths, missing modalities; the registry."""
import pytest
import torch

from mmlab.fusion import (
    available_fusions, build_fusion, drop_modality, modality_dropout, register_fusion, unregister_fusion,
)
from mmlab.fusion.base import Fusion

DIMS = {"image": 12, "text": 8}
BUILTIN = [
    "bottleneck", "cross_attention", "early", "film", "flamingo", "gated", "late", "lmf", "perceiver",
    "single_stream", "tensor",
]
# Flamingo's gates start closed (context gets exactly zero gradient); open them for the gradient test.
GRAD_OPTIONS = {"flamingo": {"gate_init": 0.5}}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_tokens(batch=3, n_image=7, n_text=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(batch, n_image, 12, generator=g), "text": torch.randn(batch, n_text, 8, generator=g)}


def build(name, dims=DIMS, out=5, **options):
    torch.manual_seed(0)
    return build_fusion(name, dims, out, **options).eval()


def test_all_families_registered():
    assert set(BUILTIN) <= set(available_fusions())


@pytest.mark.parametrize("name", BUILTIN)
def test_output_shape_and_finite(name):
    out = build(name)(make_tokens())
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", BUILTIN)
def test_three_modalities(name):
    dims = {**DIMS, "audio": 6}
    tokens = {**make_tokens(batch=2), "audio": torch.randn(2, 4, 6)}
    assert build(name, dims, out=3)(tokens).shape == (2, 3)


@pytest.mark.parametrize("name", BUILTIN)
def test_gradients_reach_every_modality(name):
    fusion = build(name, **GRAD_OPTIONS.get(name, {})).train()
    tokens = {m: t.requires_grad_() for m, t in make_tokens().items()}
    fusion(tokens).square().sum().backward()
    for m, t in tokens.items():
        assert t.grad is not None and t.grad.abs().sum() > 0, f"{name}: no gradient reaches {m}"
    for pname, p in fusion.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} gets no gradient"


@pytest.mark.parametrize("name", BUILTIN)
def test_variable_token_counts(name):
    fusion = build(name)
    for n_image, n_text in [(1, 1), (7, 3), (16, 11)]:
        assert fusion(make_tokens(n_image=n_image, n_text=n_text)).shape == (3, 5)


@pytest.mark.parametrize("name", BUILTIN)
def test_masked_tokens_do_not_affect_output(name):
    fusion = build(name, **GRAD_OPTIONS.get(name, {}))
    tokens = make_tokens(batch=4, n_image=7, n_text=6)
    lengths = {"image": torch.tensor([7, 3, 1, 5]), "text": torch.tensor([2, 6, 4, 1])}
    masks = {m: torch.arange(tokens[m].shape[1])[None] < lengths[m][:, None] for m in tokens}
    changed = {m: torch.where(masks[m][..., None], t, 100.0 * torch.randn_like(t)) for m, t in tokens.items()}
    with torch.no_grad():
        a, b = fusion(tokens, masks), fusion(changed, masks)
        unmasked = fusion(changed)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a, unmasked, atol=1e-3), f"{name}: masks have no effect"
    # a padded batch gives the same answer as the unpadded sample on its own
    with torch.no_grad():
        alone = fusion({m: tokens[m][1:2, : int(lengths[m][1])] for m in tokens})
    torch.testing.assert_close(a[1:2], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", BUILTIN)
def test_missing_modality_is_a_clear_error(name):
    tokens = make_tokens()
    del tokens["text"]
    with pytest.raises(ValueError, match="text"):
        build(name)(tokens)


@pytest.mark.parametrize("name", BUILTIN)
def test_dropped_modality_changes_output(name):
    fusion = build(name, **GRAD_OPTIONS.get(name, {}))
    tokens = make_tokens()
    with torch.no_grad():
        full = fusion(tokens)
        for m in tokens:
            out = fusion(drop_modality(tokens, m))
            assert out.shape == full.shape and not torch.allclose(out, full, atol=1e-4), f"{name}: {m} ignored"


def test_flamingo_closed_gate_ignores_context_at_init():
    fusion = build("flamingo")  # query: "text"
    tokens = make_tokens()
    with torch.no_grad():
        torch.testing.assert_close(fusion(tokens), fusion(drop_modality(tokens, "image")))
    assert fusion.gates() == [(0.0, 0.0)]


def test_bad_inputs_are_clear_errors():
    fusion = build("early")
    tokens = make_tokens()
    with pytest.raises(ValueError, match="width 9"):
        fusion({**tokens, "text": torch.randn(3, 5, 9)})
    with pytest.raises(ValueError, match="batch size"):
        fusion({**tokens, "text": torch.randn(2, 5, 8)})
    with pytest.raises(ValueError, match="unexpected modalities"):
        fusion({**tokens, "audio": torch.randn(3, 5, 8)})
    with pytest.raises(ValueError, match="bool tensor"):
        fusion(tokens, {"text": torch.ones(3, 5)})
    with pytest.raises(ValueError, match="keeps no token"):
        fusion(tokens, {"text": torch.zeros(3, 5, dtype=torch.bool)})
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


@pytest.mark.parametrize("name", BUILTIN)
def test_check_fusion_passes_for_builtins(name):
    from mmlab.fusion import check_fusion

    results = check_fusion(name, **GRAD_OPTIONS.get(name, {}))
    assert all(results.values()) and len(results) == 6


def test_check_fusion_catches_a_broken_fusion():
    from mmlab.fusion import check_fusion

    @register_fusion("test_ignores_text")
    class IgnoresText(Fusion):
        def __init__(self, input_dims, output_dim):
            super().__init__(input_dims, output_dim)
            self.head = torch.nn.Linear(input_dims["image"], output_dim)

        def forward(self, tokens, masks=None):
            tokens, masks = self.check_inputs(tokens, masks)
            return self.head(tokens["image"].mean(1))  # ignores masks and the text

    try:
        with pytest.raises(AssertionError, match="no gradient reaches modality 'text'"):
            check_fusion("test_ignores_text")
    finally:
        unregister_fusion("test_ignores_text")
