"""Every fusion family validates every constructor option before building anything (TypeError for a wrong type,
ValueError for a wrong value, each message naming the family, the option and the value); unknown options name
the accepted ones; and, for every family, the documented behaviour for mixed token dtypes, an empty batch and
tokens on different devices."""
import re

import numpy as np
import pytest
import torch

from mmlab.fusion import Fusion, build_fusion, check_fusion, fusion_options, register_fusion, unregister_fusion
from mmlab.fusion.base import OPTION_RULES, check_options

DIMS = {"image": 12, "text": 8}
BUILTIN = [
    "bottleneck", "cross_attention", "early", "film", "flamingo", "gated", "late", "lmf", "perceiver",
    "single_stream", "tensor",
]
ATTENTION = ["bottleneck", "cross_attention", "flamingo", "perceiver", "single_stream"]  # have `heads`
OPEN_GATES = {"flamingo": {"gate_init": 0.5}}  # at init Flamingo ignores the context (and gives it no gradient)
NAN, INF = float("nan"), float("inf")

pytestmark = pytest.mark.usefixtures("one_thread")

# Bad values per kind of option: (value, expected error). The default width of every attention family is 32.
SIZE = [(0, ValueError), (-1, ValueError), (-64, ValueError), (2.0, TypeError), (8.5, TypeError),
        (True, TypeError), (False, TypeError), ("8", TypeError), (None, TypeError)]
DEPTH = [(0, ValueError), (-1, ValueError), (1.0, TypeError), (True, TypeError), ("2", TypeError), (None, TypeError)]
DEPTH_FROM_0 = [(-1, ValueError), (-5, ValueError), (0.0, TypeError), (False, TypeError), (None, TypeError)]
HEADS = SIZE + [(3, ValueError), (5, ValueError), (64, ValueError)]  # do not divide width 32
DROPOUT = [(-0.1, ValueError), (1.0, ValueError), (1, ValueError), (1.5, ValueError), (NAN, ValueError),
           (INF, ValueError), (-INF, ValueError), (True, TypeError), ("0.1", TypeError), (None, TypeError)]
GATE_INIT = [(NAN, ValueError), (INF, ValueError), (-INF, ValueError), (True, TypeError), ("0", TypeError),
             (None, TypeError)]
COMBINE = [("max", ValueError), ("", ValueError), ("Mean", ValueError), (1, TypeError), (None, TypeError)]
MODALITY = [("audio", ValueError), ("", ValueError), (1, TypeError), (("text",), TypeError), (True, TypeError)]
CALLABLE = [(3, TypeError), ("CrossAttentionLayer", TypeError), (None, TypeError)]

BAD = {
    "width": SIZE, "heads": HEADS, "mlp_ratio": SIZE + [(1.5, TypeError)], "n_latents": SIZE,
    "n_bottleneck": SIZE, "tensor_dim": SIZE, "rank": SIZE, "max_features": SIZE, "depth": DEPTH,
    "dropout": DROPOUT, "gate_init": GATE_INIT, "combine": COMBINE, "query": MODALITY, "target": MODALITY,
    "make_layer": CALLABLE,
}
BAD_FOR = {("perceiver", "depth"): DEPTH_FROM_0}  # perceiver: depth counts the layers after the cross-attention

CASES = [
    pytest.param(name, option, value, error, id=f"{name}-{option}={value!r}")
    for name in BUILTIN
    for option in fusion_options(name)
    for value, error in BAD_FOR.get((name, option), BAD.get(option, []))
]


def make_tokens(batch=3, n_image=7, n_text=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(batch, n_image, 12, generator=g), "text": torch.randn(batch, n_text, 8, generator=g)}


def build(name, **options):
    torch.manual_seed(0)
    return build_fusion(name, DIMS, 5, **options).eval()


def test_every_option_of_every_family_has_bad_values_to_try():
    untested = [(n, o) for n in BUILTIN for o in fusion_options(n) if (n, o) not in BAD_FOR and o not in BAD]
    assert not untested
    assert len(CASES) > 300


@pytest.mark.parametrize(("name", "option", "value", "error"), CASES)
def test_bad_option_is_a_clear_error_before_anything_is_built(name, option, value, error):
    state = torch.get_rng_state()
    pattern = rf"^{name} fusion: {option}\b.*{re.escape(repr(value))}"
    with pytest.raises(error, match=pattern) as info:
        build_fusion(name, DIMS, 5, **{option: value})
    assert type(info.value) is error  # not a subclass raised from deep inside torch
    assert torch.equal(torch.get_rng_state(), state), "a layer was initialised before the option was checked"


@pytest.mark.parametrize(("name", "options"), [
    ("perceiver", {"n_latents": 0}), ("bottleneck", {"n_bottleneck": 0}), ("early", {"width": 0}),
    ("gated", {"width": 0}), ("tensor", {"tensor_dim": 0}), ("single_stream", {"depth": -1}),
    *[(name, {"heads": 0}) for name in ATTENTION],
])
def test_issue_19_degenerate_options_are_value_errors(name, options):
    """These used to give NaN, constant outputs, 0 layers or a ZeroDivisionError."""
    (option, value), = options.items()
    with pytest.raises(ValueError, match=rf"^{name} fusion: {option} must be an integer >= \d, got {value}"):
        build_fusion(name, DIMS, 5, **options)


@pytest.mark.parametrize("name", ATTENTION)
def test_heads_must_divide_the_width_the_user_chose(name):
    with pytest.raises(ValueError, match=rf"^{name} fusion: heads=4 must divide width=30"):
        build_fusion(name, DIMS, 5, width=30, heads=4)
    assert build(name, width=48, heads=3)(make_tokens()).shape == (3, 5)
    assert build(name, width=8, heads=8)(make_tokens()).shape == (3, 5)


GOOD = {  # edge values that are valid
    "width": [1, np.int64(16)], "mlp_ratio": [1], "n_latents": [1], "n_bottleneck": [1], "tensor_dim": [1],
    "rank": [1], "depth": [1, 3], "dropout": [0, 0.0, 0.999, np.float32(0.5)], "gate_init": [-2, 0.25],
    "combine": ["mean", "learned"], "query": ["image", None], "target": ["text", None],
}


@pytest.mark.parametrize("name", BUILTIN)
def test_valid_edge_values_are_accepted(name):
    tokens = make_tokens()
    for option in fusion_options(name):
        for value in GOOD.get(option, []):
            if option == "width" and name in ATTENTION:
                options = {"width": value, "heads": 1}
            else:
                options = {option: value}
            out = build(name, **options).train()(tokens)
            assert out.shape == (3, 5) and torch.isfinite(out).all(), (option, value)


def test_perceiver_with_no_self_attention_layers_is_meaningful():
    assert len(build("perceiver", depth=0).layers) == 0
    check_fusion("perceiver", depth=0)  # still reads every modality and passes the whole contract


def test_tensor_fusion_too_many_features_names_the_limit():
    with pytest.raises(ValueError, match=r"tensor_dim=8 has 81 features \(> max_features=80\)"):
        build_fusion("tensor", DIMS, 5, max_features=80)


@pytest.mark.parametrize("name", BUILTIN)
def test_unknown_option_names_the_family_and_the_accepted_options(name):
    accepted = ", ".join(fusion_options(name))
    with pytest.raises(TypeError, match=re.escape(f"fusion {name!r} has no option 'bogus'; it accepts: {accepted}")):
        build_fusion(name, DIMS, 5, bogus=1)
    with pytest.raises(TypeError, match=f"fusion {name!r} has no option 'widht', 'Depth'"):
        build_fusion(name, DIMS, 5, widht=8, Depth=1)


def test_registry_errors_for_factories_and_names():
    @register_fusion("test_no_options")
    def no_options(input_dims, output_dim):
        return build_fusion("early", input_dims, output_dim)

    @register_fusion("test_any_options")
    def any_options(input_dims, output_dim, **options):
        return build_fusion("early", input_dims, output_dim, **options)

    try:
        assert fusion_options("test_no_options") == [] and fusion_options("test_any_options") is None
        with pytest.raises(TypeError, match="fusion 'test_no_options' has no option 'width'; it takes no options"):
            build_fusion("test_no_options", DIMS, 5, width=8)
        # **options: the registry passes them on, the fusion it builds checks them
        with pytest.raises(TypeError, match="fusion 'early' has no option 'depth'"):
            build_fusion("test_any_options", DIMS, 5, depth=2)
        assert build_fusion("test_any_options", DIMS, 5, width=8)(make_tokens()).shape == (3, 5)
    finally:
        unregister_fusion("test_no_options")
        unregister_fusion("test_any_options")
    with pytest.raises(TypeError, match="fusion name must be a string, got list"):
        build_fusion(["early"], DIMS, 5)
    with pytest.raises(KeyError, match="unknown fusion 'nope'"):
        fusion_options("nope")
    with pytest.raises(TypeError, match="input_dims must map modality name -> token width, got int"):
        build_fusion("early", 12, 5)


def test_a_users_fusion_gets_the_same_option_checks():
    class Pool(Fusion):
        def __init__(self, input_dims, output_dim, width=8, dropout=0.0):
            super().__init__(input_dims, output_dim)
            self.check_options(width=width, dropout=dropout)
            self.head = torch.nn.Linear(sum(self.input_dims.values()), output_dim)

    with pytest.raises(ValueError, match=r"^Pool fusion: width must be an integer >= 1, got 0"):
        Pool(DIMS, 5, width=0)
    Pool.family = "pool"
    with pytest.raises(ValueError, match=r"^pool fusion: dropout must be a finite number in \[0, 1\), got 1.0"):
        Pool(DIMS, 5, dropout=1.0)
    assert check_options("pool", {"width": np.int64(4), "dropout": 0}) == {"width": 4, "dropout": 0.0}
    with pytest.raises(ValueError, match="no rule for option 'colour'"):
        check_options("pool", {"colour": 1})
    assert set(OPTION_RULES) >= {"width", "depth", "heads", "dropout"}


# ---- inputs: mixed dtypes, empty batch, devices --------------------------------------------------------------

DTYPES = [
    (torch.float32, torch.float64), (torch.float64, torch.float32), (torch.float64, torch.float64),
    (torch.bfloat16, torch.float16), (torch.float16, torch.float32),
]


@pytest.mark.parametrize("name", BUILTIN)
def test_mixed_token_dtypes_are_cast_to_the_parameter_dtype(name):
    fusion = build(name, **OPEN_GATES.get(name, {}))
    x = make_tokens()
    with torch.no_grad():
        for image_dtype, text_dtype in DTYPES:
            given = {"image": x["image"].to(image_dtype), "text": x["text"].to(text_dtype)}
            out = fusion(given)
            assert out.dtype == torch.float32, (image_dtype, text_dtype)
            assert torch.equal(out, fusion({m: t.float() for m, t in given.items()})), (image_dtype, text_dtype)
        assert torch.equal(fusion({"image": x["image"], "text": x["text"].double()}), fusion(x))
        masks = {"text": torch.tensor([[1, 1, 0, 0, 0]] * 3)}
        assert torch.equal(fusion({"image": x["image"].double(), "text": x["text"]}, masks), fusion(x, masks))
        wide = build(name, **OPEN_GATES.get(name, {})).double()  # a float64 fusion computes in float64
        out = wide({"image": x["image"], "text": x["text"].half()})
        assert out.dtype == torch.float64
        assert torch.equal(out, wide({"image": x["image"].double(), "text": x["text"].half().double()}))


@pytest.mark.parametrize("name", BUILTIN)
def test_gradients_reach_mixed_dtype_tokens_in_their_own_dtype(name):
    fusion = build(name, **OPEN_GATES.get(name, {})).train()
    x = make_tokens()
    tokens = {"image": x["image"].requires_grad_(), "text": x["text"].double().requires_grad_()}
    fusion(tokens).square().sum().backward()
    for m, t in tokens.items():
        assert t.grad.dtype == t.dtype and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0, m


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", BUILTIN)
def test_empty_batch_is_a_value_error_in_every_family(name, train):
    fusion = build(name).train(train)
    empty = make_tokens(batch=0)
    pattern = (rf"^{type(fusion).__name__} got an empty batch \(B=0\): "
               r"tokens\['image'\] \(0, 7, 12\), tokens\['text'\] \(0, 5, 8\); a fusion needs at least one sample")
    with pytest.raises(ValueError, match=pattern):
        fusion(empty)
    with pytest.raises(ValueError, match=pattern):
        fusion(empty, {"text": torch.ones(0, 5, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"tokens\['text'\] has batch size 3, other modalities have 0"):
        fusion({"image": empty["image"], "text": make_tokens()["text"]})
    with pytest.raises(ValueError, match=r"tokens\['text'\] has batch size 0, other modalities have 3"):
        fusion({"image": make_tokens()["image"], "text": empty["text"]})


@pytest.mark.parametrize("name", BUILTIN)
def test_tokens_on_another_device_are_a_value_error(name):
    fusion = build(name)
    x = make_tokens()
    with pytest.raises(ValueError, match=r"tokens\['text'\] is on meta, tokens\['image'\] on cpu"):
        fusion({"image": x["image"], "text": x["text"].to("meta")})
    pattern = rf"^{type(fusion).__name__} has its parameters on meta but the tokens are on cpu"
    with pytest.raises(ValueError, match=pattern):
        fusion.to("meta")(x)

