"""What every fusion shares: input and option checks, masked pooling, small building blocks.

Documented behaviour of every fusion (`Fusion.check_inputs` enforces it, so a user's fusion that calls it
behaves the same):

- missing modality: a `ValueError` naming the missing modality. To model an absent modality, pass it as
  zeros (`drop_modality`); `modality_dropout` does that at random during training;
- empty batch (B = 0): a `ValueError` ("empty batch"), in every family, as for zero tokens (N = 0);
- token dtypes: tokens of any floating dtype are accepted, also mixed across modalities (say float32
  image tokens and float64 text tokens); they are cast to the fusion's parameter dtype (the dtype of its
  first floating parameter, so `fusion.double()` computes in float64), and the output has that dtype.
  Gradients flow back to each input in its own dtype. Tokens already in that dtype are not copied;
- devices: all tokens on one device, the fusion's parameters' device, else a `ValueError` naming them.

Constructor options are validated before anything is built (`check_options`): a wrong type is a
`TypeError`, a wrong value a `ValueError`, each naming the family, the option and the value.
"""
from __future__ import annotations

from typing import Any, Collection, Mapping

import torch
from torch import Tensor, nn

from mmlab.encoders.layers import TransformerBlock, masked_mean  # noqa: F401  (masked_mean re-exported)
from mmlab.validation import finite_float, int_at_least, keep_mask, positive_int, require_tensor

Tokens = Mapping[str, Tensor]
Masks = Mapping[str, Tensor]


# The rule for each constructor option name the built-in families use (a user's fusion may use them too).
# Sizes are integers >= 1 (numpy integers too; bools and floats such as 2.0 are a TypeError); `mlp_ratio` is an
# integer because the MLP's hidden width is `mlp_ratio * width`; given both, `heads` must divide `width`.
SIZE_OPTIONS = ("width", "heads", "mlp_ratio", "n_latents", "n_bottleneck", "tensor_dim", "rank", "max_features")
OPTION_RULES = {
    **{o: "an integer >= 1" for o in SIZE_OPTIONS},
    "depth": "an integer >= 1 (>= 0 where a family documents that 0 layers is meaningful: perceiver)",
    "dropout": "a real number in [0, 1)",
    "gate_init": "a finite real number",
    "make_layer": "a callable",
}


def check_options(family: str, options: Mapping[str, Any], *, min_depth: int = 1) -> dict[str, Any]:
    """Validate constructor `options` of fusion `family` by the rule for each name (`OPTION_RULES`); return them
    as validated (ints as int, dropout and gate_init as float).

    Every message starts with "<family> fusion: <option>" and shows the value. Called before any layer is
    built, so a bad option leaves no half-built module and draws nothing from the random generator."""
    out: dict[str, Any] = {}
    for option, value in options.items():
        name = f"{family} fusion: {option}"
        if option in SIZE_OPTIONS:
            out[option] = int_at_least(name, value, 1)
        elif option == "depth":
            out[option] = int_at_least(name, value, min_depth)
        elif option == "dropout":
            out[option] = finite_float(name, value, 0.0, 1.0, high_open=True)
        elif option == "gate_init":
            out[option] = finite_float(name, value)
        elif option == "make_layer":
            if not callable(value):
                raise TypeError(f"{name} must be callable, got {type(value).__name__} {value!r}")
            out[option] = value
        else:
            raise ValueError(f"check_options has no rule for option {option!r}; rules exist for {sorted(OPTION_RULES)}")
    if "heads" in out and "width" in out and out["width"] % out["heads"]:
        raise ValueError(
            f"{family} fusion: heads={out['heads']} must divide width={out['width']} "
            f"(each attention head gets width // heads channels)"
        )
    return out


def choice_option(family: str, option: str, value: Any, choices: Collection[str]) -> str:
    """`value` if it is one of the strings `choices`: a non-string is a TypeError, another string a ValueError."""
    if not isinstance(value, str):
        raise TypeError(
            f"{family} fusion: {option} must be one of {tuple(choices)}, got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{family} fusion: {option} must be one of {tuple(choices)}, got {value!r}")
    return value


class Fusion(nn.Module):
    """Base class: remembers the modalities and validates `forward`'s inputs (see the module docstring).

    `family` is the name used in error messages (the built-in families set their registered name);
    a subclass that leaves it unset is named by its class name."""

    family: str | None = None

    @classmethod
    def family_name(cls) -> str:
        """`family`, or the class name when unset."""
        return cls.family or cls.__name__

    def check_options(self, *, min_depth: int = 1, **options: Any) -> dict[str, Any]:
        """`check_options(self.family_name(), options, min_depth=min_depth)`."""
        return check_options(self.family_name(), options, min_depth=min_depth)

    def __init__(self, input_dims: Mapping[str, int], output_dim: int, min_modalities: int = 1):
        super().__init__()
        if not isinstance(input_dims, Mapping):
            raise TypeError(f"input_dims must map modality name -> token width, got {type(input_dims).__name__}")
        if len(input_dims) < min_modalities:
            raise ValueError(
                f"{type(self).__name__} needs input_dims with at least {min_modalities} modalities "
                f"(name -> token width), got {dict(input_dims)!r}"
            )
        for name, dim in input_dims.items():
            if not isinstance(name, str):
                raise TypeError(f"input_dims keys must be modality names (str), got {type(name).__name__} {name!r}")
            positive_int(f"input_dims[{name!r}]", dim)
        self.modalities: tuple[str, ...] = tuple(input_dims)
        self.input_dims: dict[str, int] = dict(input_dims)
        self.output_dim = positive_int("output_dim", output_dim)

    def check_inputs(self, tokens: Tokens, masks: Masks | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Validate tokens/masks; return the tokens in the fusion's dtype and a bool keep-mask (all True where
        not given) per modality.

        Tokens: (B, N, D) floating tensors, B >= 1 and N >= 1, one batch size and one device for all
        modalities (the device of the fusion's parameters); any floating dtypes, also mixed, cast to the
        dtype of the fusion's first floating parameter (or, for a fusion without parameters, to their
        promoted dtype). Masks may be bool or 0/1 integers; that every sample keeps a token is checked
        only for masks on the host, so validation never synchronises a GPU."""
        name = type(self).__name__
        if not isinstance(tokens, Mapping):
            raise TypeError(f"{name} expects tokens as dict[str, Tensor (B, N, D)], got {type(tokens).__name__}")
        missing = [m for m in self.modalities if m not in tokens]
        if missing:
            raise ValueError(
                f"{name} expects modalities {list(self.modalities)} but {missing} missing; "
                "to model an absent modality pass zeros (mmlab.fusion.drop_modality)"
            )
        extra = [m for m in tokens if m not in self.input_dims]
        if extra:
            raise ValueError(f"{name} got unexpected modalities {extra}; it was built for {list(self.modalities)}")
        masks = dict(masks or {})
        unknown = sorted(m for m in masks if m not in self.input_dims)
        if unknown:
            raise ValueError(f"masks given for unknown modalities {unknown}")
        batch = None
        out_masks = {}
        for m in self.modalities:
            x = require_tensor(f"tokens[{m!r}]", tokens[m])
            if x.dim() != 3:
                raise ValueError(f"tokens[{m!r}] must be a (B, N, D) tensor, got shape {tuple(x.shape)}")
            if not x.is_floating_point():
                raise TypeError(f"tokens[{m!r}] must be floating point, got {x.dtype}")
            if x.shape[-1] != self.input_dims[m]:
                raise ValueError(f"tokens[{m!r}] has width {x.shape[-1]}, expected {self.input_dims[m]}")
            if x.shape[1] == 0:
                raise ValueError(f"tokens[{m!r}] has no tokens (N=0)")
            if batch is None:
                batch, device = x.shape[0], x.device
            elif x.shape[0] != batch:
                raise ValueError(f"tokens[{m!r}] has batch size {x.shape[0]}, other modalities have {batch}")
            elif x.device != device:
                raise ValueError(f"tokens[{m!r}] is on {x.device}, tokens[{self.modalities[0]!r}] on {device}; "
                                 "put all modalities on one device")
            mask = keep_mask(masks.get(m), *x.shape[:2], x.device, name=f"masks[{m!r}]")
            out_masks[m] = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask
        if batch == 0:
            shapes = ", ".join(f"tokens[{m!r}] {tuple(tokens[m].shape)}" for m in self.modalities)
            raise ValueError(f"{name} got an empty batch (B=0): {shapes}; a fusion needs at least one sample")
        param = next((p for p in self.parameters() if p.is_floating_point()), None)
        if param is not None and param.device != device:
            raise ValueError(f"{name} has its parameters on {param.device} but the tokens are on {device}; "
                             "move one of them (fusion.to(device) or tokens[m].to(device))")
        if param is not None:
            dtype = param.dtype
        else:  # a fusion without parameters: the tokens' promoted dtype
            dtype = tokens[self.modalities[0]].dtype
            for m in self.modalities[1:]:
                dtype = torch.promote_types(dtype, tokens[m].dtype)
        return {m: tokens[m].to(dtype) for m in self.modalities}, out_masks


def drop_modality(tokens: Tokens, name: str) -> dict[str, Tensor]:
    """A copy of `tokens` with modality `name` replaced by zeros (same shape)."""
    if name not in tokens:
        raise KeyError(f"no modality {name!r} to drop; have {list(tokens)}")
    out = dict(tokens)
    out[name] = torch.zeros_like(tokens[name])
    return out


def modality_dropout(tokens: Tokens, p: float, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Zero each modality of each sample with probability `p`, never all modalities of one sample."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"modality dropout p must be in [0, 1), got {p}")
    names = list(tokens)
    if p == 0.0 or len(names) < 2:
        return dict(tokens)
    first = tokens[names[0]]
    batch = first.shape[0]
    drop = torch.rand(batch, len(names), generator=generator) < p  # (B, M)
    all_dropped = drop.all(dim=1)
    if all_dropped.any():  # restore one random modality for those samples
        keep = torch.randint(len(names), (batch,), generator=generator)
        drop[all_dropped, keep[all_dropped]] = False
    drop = drop.to(first.device)
    return {m: tokens[m] * (~drop[:, i]).to(tokens[m].dtype)[:, None, None] for i, m in enumerate(names)}


def self_attention_layer(width: int, heads: int, mlp_ratio: int = 2, dropout: float = 0.0) -> TransformerBlock:
    """The shared pre-norm transformer block (mmlab.encoders.layers); call it as `layer(x, keep_mask)`."""
    return TransformerBlock(width, heads, mlp_ratio * width, dropout=dropout)


def feed_forward(width: int, mlp_ratio: int = 2, dropout: float = 0.0) -> nn.Sequential:
    """Pre-norm GELU MLP (width -> mlp_ratio*width -> width)."""
    return nn.Sequential(
        nn.LayerNorm(width), nn.Linear(width, mlp_ratio * width), nn.GELU(),
        nn.Dropout(dropout), nn.Linear(mlp_ratio * width, width),
    )


def classifier_head(in_dim: int, output_dim: int) -> nn.Sequential:
    """LayerNorm + Linear: the last step of most fusions."""
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, output_dim))


class Projections(nn.Module):
    """One Linear per modality to a shared width, plus a learned modality-type embedding."""

    def __init__(self, input_dims: Mapping[str, int], width: int, type_embeddings: bool = True):
        super().__init__()
        self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in input_dims.items()})
        self.type_embed = nn.ParameterDict(
            {m: nn.Parameter(0.02 * torch.randn(width)) for m in input_dims} if type_embeddings else {}
        )

    def forward(self, name: str, x: Tensor) -> Tensor:
        out = self.proj[name](x)  # (B, N, width)
        if name in self.type_embed:
            out = out + self.type_embed[name]
        return out


def pick_modality(input_dims: Mapping[str, int], given: str | None, preferred: str, role: str,
                  family: str = "") -> str:
    """`given` if set (a modality name, else a TypeError; one of `input_dims`, else a ValueError), else
    `preferred` if present, else the first modality. `family` starts the error messages."""
    prefix = f"{family} fusion: " if family else ""
    if given is not None:
        if not isinstance(given, str):
            raise TypeError(
                f"{prefix}{role} must be a modality name (str) or None, got {type(given).__name__} {given!r}")
        if given not in input_dims:
            raise ValueError(f"{prefix}{role} modality {given!r} is not one of {list(input_dims)}")
        return given
    return preferred if preferred in input_dims else next(iter(input_dims))
