"""mmlab.optim: which parameters get weight decay, and the warm-up + cosine lr schedule."""
import math

import pytest
import torch
from torch import nn

from mmlab.encoders import TextConfig, TextTransformer, VisionTransformer, ViTConfig
from mmlab.optim import lr_factor, parameter_groups


def names_by_decay(model, weight_decay=0.1):
    groups = parameter_groups(model, weight_decay)
    named = dict(model.named_parameters())
    assert all(named[n] is p for g in groups for n, p in zip(g["param_names"], g["params"], strict=True))
    by = {g["weight_decay"]: g["param_names"] for g in groups}
    return set(by.get(weight_decay, [])), set(by.get(0.0, []))


def block_names(prefix, depth):
    decay, no_decay = set(), {f"{prefix}.norm.weight", f"{prefix}.norm.bias"}
    for i in range(depth):
        b = f"{prefix}.blocks.{i}"
        decay |= {f"{b}.{m}.weight" for m in ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.fc1", "mlp.fc2")}
        no_decay |= {f"{b}.{m}.bias" for m in ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.fc1", "mlp.fc2")}
        no_decay |= {f"{b}.{n}.{p}" for n in ("norm1", "norm2") for p in ("weight", "bias")}
    return decay, no_decay


def test_vision_transformer_groups():
    vit = VisionTransformer(ViTConfig(dim=16, depth=2, heads=2, image_size=8, patch_size=4))
    decay, no_decay = block_names("transformer", 2)
    assert names_by_decay(vit) == (decay | {"patch_embed.weight"},
                                   no_decay | {"patch_embed.bias", "cls_token", "pos_embed"})


def test_text_transformer_groups_and_frozen_parameters():
    text = TextTransformer(TextConfig(dim=16, depth=1, heads=2, vocab_size=50, max_length=8))
    text.transformer.blocks[0].mlp.requires_grad_(False)
    decay, no_decay = block_names("transformer", 1)
    frozen = {"transformer.blocks.0.mlp.fc1.weight", "transformer.blocks.0.mlp.fc2.weight",
              "transformer.blocks.0.mlp.fc1.bias", "transformer.blocks.0.mlp.fc2.bias"}
    assert names_by_decay(text) == (decay - frozen, (no_decay - frozen) | {"token_embed.weight", "pos_embed"})


class Head(nn.Module):
    """The other kinds of parameter: 0-d scalars, loose matrices, token tables, containers, tied weights."""

    def __init__(self, d=8):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # 0-d
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))
        self.latents = nn.Parameter(torch.randn(1, 4, d))
        self.bottleneck = nn.Parameter(torch.randn(1, 2, d))
        self.query_tokens = nn.Parameter(torch.randn(1, 3, d))
        self.lora_A = nn.Parameter(torch.randn(2, d))
        self.lora_B = nn.Parameter(torch.zeros(d, 2))
        self.type_embed = nn.ParameterDict({"image": nn.Parameter(torch.randn(d)),
                                            "text": nn.Parameter(torch.randn(1, 1, d))})
        self.factors = nn.ParameterDict({"image": nn.Parameter(torch.randn(2, d, d))})
        self.attn = nn.MultiheadAttention(d, 2)
        self.embed = nn.Embedding(10, d)
        self.unembed = nn.Linear(d, 10, bias=False)
        self.unembed.weight = self.embed.weight  # tied: one parameter, counted once


def test_scalars_tokens_matrices_and_tied_weights():
    decay, no_decay = names_by_decay(Head())
    assert decay == {"lora_A", "lora_B", "factors.image", "attn.in_proj_weight", "attn.out_proj.weight"}
    assert no_decay == {"log_scale", "logit_bias", "latents", "bottleneck", "query_tokens", "type_embed.image",
                        "type_embed.text", "attn.in_proj_bias", "attn.out_proj.bias", "embed.weight"}
    groups = parameter_groups(Head(), 0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(Head().parameters()))


def test_groups_drive_adamw_and_reject_bad_decay():
    model = nn.Sequential(nn.LayerNorm(4))  # nothing to decay: one group
    groups = parameter_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.0]
    torch.optim.AdamW(groups, lr=1e-3)
    with pytest.raises(ValueError, match="weight_decay"):
        parameter_groups(model, -1.0)


def test_lr_factor_closed_form():
    steps, warmup, floor = 10, 3, 0.1
    got = [lr_factor(s, steps, "cosine", warmup, floor) for s in range(steps + 2)]
    expected = [1 / 3, 2 / 3, 1.0] + [floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - 3) / 7))
                                      for s in range(3, 10)] + [floor, floor]
    assert got == pytest.approx(expected, abs=1e-12)
    assert [lr_factor(s, steps, "constant", 2) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert [lr_factor(s, steps) for s in range(3)] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, steps, "linear")
