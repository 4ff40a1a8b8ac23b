"""Vision transformer (Dosovitskiy et al., 2021) and weight conversion to/from transformers' ViTModel.

Patch embedding is a Conv2d with kernel = stride = patch size, which equals
`mmlab.preprocess.image.patchify(x, p) @ W.reshape(D, -1).T + b`: patchify flattens each patch
in the Conv2d weight's (C, p, p) order.
"""
from __future__ import annotations

from torch import Tensor, nn

from mmlab.encoders.config import ViTConfig
from mmlab.encoders.layers import TokenEncoder, Transformer, add_cls_and_positions, cls_and_positions
from mmlab.validation import floating_batch


class VisionTransformer(TokenEncoder):
    """images (B, C, H, W) -> tokens (B, 1 + N, D): [CLS] + one token per patch, final LayerNorm applied."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config, self.dim = config, config.dim
        c = config
        self.patch_embed = nn.Conv2d(c.in_channels, c.dim, c.patch_size, stride=c.patch_size)
        self.cls_token, self.pos_embed = cls_and_positions(c.num_patches, c.dim)
        self.transformer = Transformer.from_config(c)

    def embed(self, images: Tensor) -> Tensor:
        """Patch + CLS + position embeddings: (B, C, H, W) -> (B, 1 + N, D)."""
        c = self.config
        floating_batch("images", images, (c.in_channels, c.image_size, c.image_size))
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, N, D)
        return add_cls_and_positions(x, self.cls_token, self.pos_embed)  # (B, 1 + N, D)


# Conversion to and from transformers.ViTModel ------------------------------------------------

def _hf_layer_keys(state: dict, i: int) -> dict[str, str]:
    """Our per-block names -> HF ViT names, for both the transformers >= 5 and the older layout."""
    if f"layers.{i}.attention.q_proj.weight" in state:  # transformers >= 5
        pre = f"layers.{i}."
        names = {"attn.q": "attention.q_proj", "attn.k": "attention.k_proj", "attn.v": "attention.v_proj",
                 "attn.out": "attention.o_proj", "norm1": "layernorm_before", "norm2": "layernorm_after",
                 "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    else:  # transformers 4.x
        pre = f"encoder.layer.{i}."
        names = {"attn.q": "attention.attention.query", "attn.k": "attention.attention.key",
                 "attn.v": "attention.attention.value", "attn.out": "attention.output.dense",
                 "norm1": "layernorm_before", "norm2": "layernorm_after", "mlp.fc1": "intermediate.dense",
                 "mlp.fc2": "output.dense"}
    out = {}
    for ours, theirs in names.items():
        for p in ("weight", "bias"):
            out[f"transformer.blocks.{i}.{ours}.{p}"] = f"{pre}{theirs}.{p}"
    return out


def _key_map(hf_state: dict, depth: int) -> dict[str, str]:
    m = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
         "patch_embed.weight": "embeddings.patch_embeddings.projection.weight",
         "patch_embed.bias": "embeddings.patch_embeddings.projection.bias",
         "transformer.norm.weight": "layernorm.weight", "transformer.norm.bias": "layernorm.bias"}
    for i in range(depth):
        m.update(_hf_layer_keys(hf_state, i))
    return m


def vit_to_hf(model: VisionTransformer):
    """A transformers.ViTModel (no pooler) with this model's weights; last_hidden_state equals model(x)."""
    from transformers import ViTConfig as HFViTConfig
    from transformers import ViTModel

    c = model.config
    if c.pool != "cls":
        raise ValueError("only pool='cls' models map onto ViTModel (its pooled output is the CLS token)")
    hf_config = HFViTConfig(
        hidden_size=c.dim, num_hidden_layers=c.depth, num_attention_heads=c.heads, intermediate_size=c.mlp_dim,
        hidden_act="gelu", hidden_dropout_prob=c.dropout, attention_probs_dropout_prob=c.dropout,
        layer_norm_eps=c.layer_norm_eps, image_size=c.image_size, patch_size=c.patch_size,
        num_channels=c.in_channels, qkv_bias=c.qkv_bias)
    hf = ViTModel(hf_config, add_pooling_layer=False)
    target = hf.state_dict()
    ours = model.state_dict()
    new = {theirs: ours[k].detach().clone() for k, theirs in _key_map(target, c.depth).items() if k in ours}
    missing = [k for k in target if k not in new and not k.endswith("mask_token")]
    if missing:
        raise RuntimeError(f"vit_to_hf: no source for HF weights {missing[:5]}")
    hf.load_state_dict(new, strict=False)
    return hf.eval() if not model.training else hf


def vit_from_hf(hf_model) -> VisionTransformer:
    """A VisionTransformer with the weights of a transformers ViTModel (its pooler, if any, is dropped)."""
    hc = hf_model.config
    if hc.hidden_act != "gelu":
        raise ValueError(f"only hidden_act='gelu' (exact GELU) is supported, got {hc.hidden_act!r}")
    image_size = hc.image_size if isinstance(hc.image_size, int) else hc.image_size[0]
    patch_size = hc.patch_size if isinstance(hc.patch_size, int) else hc.patch_size[0]
    config = ViTConfig(dim=hc.hidden_size, depth=hc.num_hidden_layers, heads=hc.num_attention_heads,
                       mlp_ratio=hc.intermediate_size / hc.hidden_size, qkv_bias=hc.qkv_bias,
                       layer_norm_eps=hc.layer_norm_eps, dropout=hc.hidden_dropout_prob,
                       image_size=image_size, patch_size=patch_size, in_channels=hc.num_channels)
    if config.mlp_dim != hc.intermediate_size:
        raise ValueError(f"intermediate_size {hc.intermediate_size} is not representable as dim * mlp_ratio")
    model = VisionTransformer(config)
    source = hf_model.state_dict()
    state = {}
    for ours, theirs in _key_map(source, config.depth).items():
        if theirs not in source:
            if ours.endswith(".bias") and ".attn." in ours and not hc.qkv_bias:
                continue
            raise KeyError(f"vit_from_hf: HF weight {theirs!r} not found")
        state[ours] = source[theirs].detach().clone()
    model.load_state_dict(state)
    return model.train(hf_model.training)
