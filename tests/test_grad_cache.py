"""mmlab.train.grad_cache_step: the gradient of the whole batch's contrastive loss from chunks (float64)."""
from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmlab.train as train
from mmlab.align import info_nce
from mmlab.train import TrainConfig, fit, grad_cache_step

N, D_IN, D, VOCAB = 12, 5, 4, 9
TIGHT = dict(rtol=1e-10, atol=1e-12)


class Tower(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(D_IN, 16), nn.GELU(), nn.Dropout(dropout), nn.Linear(16, D))

    def forward(self, x):
        return F.normalize(self.net(x), dim=-1)


class TextTower(nn.Module):
    """Mean of token embeddings over the kept tokens (inputs: a dict of input_ids and attention_mask), dropout."""

    def __init__(self, dropout):
        super().__init__()
        self.embed, self.drop, self.proj = nn.Embedding(VOCAB, 16), nn.Dropout(dropout), nn.Linear(16, D)

    def forward(self, input_ids, attention_mask):
        h = self.drop(self.embed(input_ids)) * attention_mask[..., None]  # (B, L, 16)
        return F.normalize(self.proj(h.sum(1) / attention_mask.sum(1, keepdim=True)), dim=-1)


class Pair(nn.Module):
    def __init__(self, dropout=0.3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.image, self.text = Tower(dropout), TextTower(dropout)
        self.log_scale = nn.Parameter(torch.tensor(2.5))
        self.double()

    def encode_text(self, batch):
        return self.text(**batch)

    def loss(self, za, zb):
        return info_nce(za, zb, self.log_scale.exp())


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    mask = (torch.rand(N, 6, generator=g) > 0.3).long()
    mask[:, 0] = 1
    return images, {"input_ids": torch.randint(0, VOCAB, (N, 6), generator=g), "attention_mask": mask}


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def chunked_reference(model, images, texts, chunk):
    """loss_fn on features encoded chunk by chunk with autograd (the masks GradCache's first pass draws)."""
    za = torch.cat([model.image(x) for x in images.split(chunk)])
    zb = torch.cat([model.encode_text({k: v[i:i + chunk] for k, v in texts.items()}) for i in range(0, N, chunk)])
    loss = model.loss(za, zb)
    loss.backward()
    return loss.detach()


def cached(model, images, texts, chunk):
    return grad_cache_step(model.image, model.encode_text, images, texts, model.loss, chunk)


@pytest.mark.parametrize("chunk", [1, 5, N])
def test_gradients_equal_the_whole_batch_with_dropout(chunk):
    images, texts = data()
    ref_model, model = Pair(), Pair()
    torch.manual_seed(7)
    ref_loss = chunked_reference(ref_model, images, texts, chunk)
    after_ref = torch.get_rng_state()
    torch.manual_seed(7)
    loss = cached(model, images, texts, chunk)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, ref_loss, **TIGHT)
    want, got = grads(ref_model), grads(model)
    for n in want:
        torch.testing.assert_close(got[n], want[n], **TIGHT, msg=n)
    assert torch.equal(torch.get_rng_state(), after_ref)  # the generator ends where a forward pass leaves it


def test_without_dropout_it_is_the_full_batch_gradient():
    images, texts = data()
    full, model = Pair(dropout=0.0), Pair(dropout=0.0)
    full.loss(full.image(images), full.encode_text(texts)).backward()
    cached(model, images, texts, 5)
    want, got = grads(full), grads(model)
    for n in want:
        torch.testing.assert_close(got[n], want[n], **TIGHT, msg=n)


def test_without_rng_replay_the_gradients_are_wrong(monkeypatch):
    images, texts = data()
    ref_model, model = Pair(), Pair()
    torch.manual_seed(7)
    chunked_reference(ref_model, images, texts, 4)
    monkeypatch.setattr(train, "_replay_rng", lambda state: nullcontext())  # re-run chunks with fresh masks
    torch.manual_seed(7)
    cached(model, images, texts, 4)
    diff = (grads(model)["image.net.0.weight"] - grads(ref_model)["image.net.0.weight"]).abs().max()
    assert diff > 1e-3


def test_gradient_accumulation_is_not_the_big_batch_gradient():
    images, texts = data()
    big, accumulated = Pair(dropout=0.0), Pair(dropout=0.0)
    cached(big, images, texts, 4)
    for i in range(0, N, 4):  # each micro-batch contrasts its 4 pairs only
        chunk = {k: v[i:i + 4] for k, v in texts.items()}
        (accumulated.loss(accumulated.image(images[i:i + 4]), accumulated.encode_text(chunk)) / 3).backward()
    g_big, g_acc = grads(big)["image.net.0.weight"], grads(accumulated)["image.net.0.weight"]
    assert (g_big - g_acc).norm() > 0.1 * g_big.norm()


@pytest.mark.parametrize("accum", [1, 2])
def test_inside_fit(accum):
    images, texts = data()

    def batch(i):  # half the data per micro-batch, alternating
        rows = slice(0, N // 2) if i % 2 == 0 else slice(N // 2, N)
        return images[rows], {k: v[rows] for k, v in texts.items()}

    def plain(model, b):
        return model.loss(model.image(b[0]), model.encode_text(b[1]))

    def gradcache(model, b):
        return grad_cache_step(model.image, model.encode_text, b[0], b[1], model.loss, chunk_size=2)

    config = TrainConfig(steps=3, grad_accum_steps=accum, progress=False)
    a, b = Pair(dropout=0.0), Pair(dropout=0.0)
    ha = fit(a, plain, batch, config, optimizer=torch.optim.SGD(a.parameters(), lr=0.3))
    hb = fit(b, gradcache, batch, config, optimizer=torch.optim.SGD(b.parameters(), lr=0.3), loss_fn_backward=True)
    torch.testing.assert_close(torch.tensor(hb["loss"]), torch.tensor(ha["loss"]), **TIGHT)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, **TIGHT, msg=n)
    assert ha["loss"][-1] < ha["loss"][0]


def test_fit_without_loss_fn_backward_rejects_a_detached_loss():
    model = Pair(dropout=0.0)
    images, texts = data()

    def gradcache(m, b):
        return grad_cache_step(m.image, m.encode_text, images, texts, m.loss, 4)
    with pytest.raises(ValueError, match="does not require grad"):
        fit(model, gradcache, [None], TrainConfig(steps=1, progress=False))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(chunk_size=0), ValueError, "chunk_size must be a positive integer"),
    (dict(chunk_size=2.0), TypeError, "chunk_size must be a positive integer"),
    (dict(inputs_a=[1, 2]), TypeError, "inputs_a must be a tensor or a non-empty dict"),
    (dict(inputs_b={}), TypeError, "inputs_b must be a tensor or a non-empty dict"),
    (dict(inputs_b={"input_ids": torch.zeros(N, 6, dtype=torch.long), "attention_mask": torch.ones(3, 6)}),
     ValueError, "share one non-empty batch dimension"),
    (dict(inputs_a=torch.zeros(0, D_IN)), ValueError, "non-empty batch dimension"),
    (dict(encode_a=lambda x: x[:1]), ValueError, "encode_a must return a tensor with one row per input row"),
    (dict(loss_fn=lambda a, b: (a * b).sum(1)), TypeError, "loss_fn must return a scalar tensor"),
    (dict(encode_b="text"), TypeError, "encode_b"),
])
def test_bad_inputs(kwargs, error, match):
    model = Pair()
    images, texts = data()
    args = dict(encode_a=model.image, encode_b=model.encode_text, inputs_a=images, inputs_b=texts,
                loss_fn=model.loss, chunk_size=4)
    with pytest.raises(error, match=match):
        grad_cache_step(**{**args, **kwargs})


def test_fit_rejects_loss_fn_backward_with_fp16_and_non_bool():
    model = Pair()
    with pytest.raises(ValueError, match="loss_fn_backward=True cannot be used with amp='fp16'"):
        fit(model, lambda m, b: None, [None], TrainConfig(steps=1, amp="fp16", progress=False), loss_fn_backward=True)
    with pytest.raises(TypeError, match="loss_fn_backward must be True or False"):
        fit(model, lambda m, b: None, [None], TrainConfig(steps=1, progress=False), loss_fn_backward=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the CUDA generator's replay)")
def test_cuda_dropout_is_replayed():
    images, texts = data()
    images, texts = images.cuda(), {k: v.cuda() for k, v in texts.items()}
    ref_model, model = Pair().cuda(), Pair().cuda()
    torch.cuda.manual_seed(7)
    chunked_reference(ref_model, images, texts, 4)
    torch.cuda.manual_seed(7)
    cached(model, images, texts, 4)
    want, got = grads(ref_model), grads(model)
    for n in want:
        torch.testing.assert_close(got[n], want[n], **TIGHT, msg=n)
