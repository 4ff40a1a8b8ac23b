"""attention_rollout (Abnar & Zuidema, 2020): heads averaged, identity added, rows re-normalised, layers multiplied."""
import pytest
import torch

from mmlab.encoders import VisionTransformer, ViTConfig, attention_rollout


def softmax_maps(b=2, h=3, n=5, layers=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, n, generator=g).softmax(-1) for _ in range(layers)]


def test_identity_attention_rolls_out_to_identity():
    eye = torch.eye(6).expand(2, 4, 6, 6)
    for residual in (True, False):
        torch.testing.assert_close(attention_rollout([eye, eye, eye], residual=residual), torch.eye(6).expand(2, 6, 6))


def test_rows_sum_to_one_and_values_are_probabilities():
    r = attention_rollout(softmax_maps())
    assert r.shape == (2, 5, 5)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 5))
    assert (r >= 0).all()


def test_matches_a_hand_computation_on_two_layers():
    # layer 1: two heads whose mean is [[0.5, 0.5], [0, 1]]; layer 2: one head [[1, 0], [0.5, 0.5]]
    a1 = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    a2 = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])  # (1, 1, 2, 2)
    # with the residual: R1 = [[.75, .25], [0, 1]], R2 = [[1, 0], [.25, .75]], rollout = R2 @ R1
    expected = torch.tensor([[[0.75, 0.25], [0.1875, 0.8125]]])
    torch.testing.assert_close(attention_rollout([a1, a2]), expected)
    # without it: A2 @ A1 = [[.5, .5], [.25, .75]]; the layer order matters (A1 @ A2 = [[.75, .25], [.5, .5]])
    torch.testing.assert_close(attention_rollout([a1, a2], residual=False), torch.tensor([[[0.5, 0.5], [0.25, 0.75]]]))
    assert not torch.allclose(attention_rollout([a2, a1], residual=False), attention_rollout([a1, a2], residual=False))


def test_renormalises_rows_that_do_not_sum_to_one():
    a = torch.tensor([[[[2.0, 2.0], [0.0, 4.0]]]])  # rows sum to 4; + I then normalised: [[.6, .4], [0, 1]]
    torch.testing.assert_close(attention_rollout([a]), torch.tensor([[[0.6, 0.4], [0.0, 1.0]]]))


def test_rollout_of_a_vit():
    vit = VisionTransformer(ViTConfig(dim=16, depth=3, heads=2, image_size=8, patch_size=4)).eval()
    with torch.no_grad():
        maps = vit.forward_with_attention(torch.rand(2, 3, 8, 8)).attentions
    r = attention_rollout(maps)
    assert r.shape == (2, 5, 5)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 5))
    one_layer = attention_rollout(maps[:1])
    torch.testing.assert_close(one_layer, (maps[0].mean(1) + torch.eye(5)) / 2)


def test_bad_inputs_raise_clear_errors():
    maps = softmax_maps()
    with pytest.raises(TypeError, match="attentions must be a non-empty sequence"):
        attention_rollout(maps[0])
    with pytest.raises(TypeError, match="attentions must be a non-empty sequence"):
        attention_rollout([])
    with pytest.raises(ValueError, match=r"attentions\[1\] must be \(B, heads, N, N\)"):
        attention_rollout([maps[0], torch.rand(2, 3, 4, 4)])
    with pytest.raises(ValueError, match=r"attentions\[0\] must be \(B, heads, N, N\)"):
        attention_rollout([torch.rand(2, 5, 5)])
    with pytest.raises(ValueError, match=r"attentions\[0\] must be \(B, heads, N, N\)"):
        attention_rollout([torch.rand(2, 3, 5, 4)])
