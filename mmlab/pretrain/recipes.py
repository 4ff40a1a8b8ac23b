"""The lesson's pretraining runs and measurements (lesson 10), in the package so that tests and the calibration
script run exactly what the notebook runs.

Training: `train_vlp` (the ALBEF-style `VLPModel` on Shapes-World with a chosen set of objectives) and
`train_mae` (a masked autoencoder on the images alone), both through `mmlab.train.fit`. Measurements on held-out
data: `mlm_attribute_accuracy` (masked attribute words recovered), `itm_pair_accuracy` (ITM on one-word-swapped
captions), `i2t_recall_at_1` (ITC ranking and ITM re-ranking of the top-k ITC candidates, scored by truth) and
`probe_accuracy` (a linear probe on frozen image features).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from mmlab import validation
from mmlab.align.model import clamp_logit_scale
from mmlab.data.shapes_text import COLORS, SHAPES, SIZES
from mmlab.encoders.config import ViTConfig
from mmlab.encoders.vision import VisionTransformer
from mmlab.evaluate import linear_probe_accuracy
from mmlab.pretrain.config import MAEConfig
from mmlab.pretrain.data import CompactVocab, VLData, load_vl_data
from mmlab.pretrain.mae import MaskedAutoencoder
from mmlab.pretrain.unified import UnifiedConfig, UnifiedVLPModel
from mmlab.pretrain.vlp import Objectives, VLPConfig, VLPModel, vlp_loss
from mmlab.runtime import seed_everything
from mmlab.train import TrainConfig, fit

ATTRIBUTE_WORDS = SHAPES + COLORS + SIZES


def vlp_batches(data: VLData, vocab: CompactVocab, batch_size: int, seed: int):
    """A callable step -> batch for `fit`: `batch_size` random images, one random caption of each, their truth
    matrix, and a per-step seed for masking and negatives (a pure function of (seed, step))."""
    validation.positive_int("batch_size", batch_size)
    n = len(data)
    special = vocab.special_ids

    def batch(step: int) -> dict:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, n, (batch_size,), generator=g)
        rows = idx * 4 + torch.randint(0, 4, (batch_size,), generator=g)
        length = int(data.mask[rows].sum(1).max())
        return {"images": data.images[idx], "ids": data.ids[rows, :length], "mask": data.mask[rows, :length],
                "truth": data.truth(idx, rows), "seed": seed * 1_000_003 + step, "index": idx, "rows": rows,
                "vocab": (len(vocab), vocab.mask_id, special)}

    return batch


def train_vlp(data: VLData, vocab: CompactVocab, objectives: Objectives, steps: int = 300, batch_size: int = 64,
              lr: float = 2e-3, seed: int = 0,
              config: VLPConfig | UnifiedConfig | None = None) -> tuple[VLPModel | UnifiedVLPModel, dict]:
    """A fresh model (initialised under `seed`) trained for `steps` on `objectives` -> (model in eval mode, fit's
    history): a `VLPModel` (towers + fusion encoder), or a `UnifiedVLPModel` when `config` is a `UnifiedConfig`."""
    if not isinstance(objectives, Objectives):
        raise TypeError(f"objectives must be an Objectives, got {type(objectives).__name__}")
    config = VLPConfig(vocab_size=len(vocab)) if config is None else config
    if not isinstance(config, (VLPConfig, UnifiedConfig)):
        raise TypeError(f"config must be a VLPConfig or UnifiedConfig, got {type(config).__name__}")
    seed_everything(seed)
    model = UnifiedVLPModel(config) if isinstance(config, UnifiedConfig) else VLPModel(config)
    history = fit(model, lambda m, b: vlp_loss(m, b, objectives)["loss"], vlp_batches(data, vocab, batch_size, seed),
                  TrainConfig(steps=steps, lr=lr, seed=seed, progress=False), callbacks=(clamp_logit_scale,))
    return model.eval(), history


def train_fusion(base: VLPModel, data: VLData, vocab: CompactVocab, objectives: Objectives, steps: int = 200,
                 batch_size: int = 64, lr: float = 5e-3, seed: int = 0,
                 train_image_tower: bool = False) -> tuple[VLPModel, dict]:
    """Continue from `base` (an ITC-trained model) with its text side locked: a copy whose text tower and text
    projection are frozen and whose fusion layers and ITM/MLM heads are re-initialised under `seed`, trained on
    `objectives` -> (model, history). With `train_image_tower` the image tower, its projection and the temperature
    keep training too (ITC allowed, against the locked text embeddings); otherwise they are frozen as well.

    A frozen tower's outputs for every training image and caption are computed once and cached, so a step costs
    only what is trained (and, for MLM, the frozen text tower on the masked captions)."""
    validation.boolean("train_image_tower", train_image_tower)
    if objectives.mim or (objectives.itc and not train_image_tower):
        raise ValueError(f"train_fusion trains ITM and MLM (and ITC with train_image_tower=True); got "
                         f"{objectives.name()} with train_image_tower={train_image_tower}")
    model = copy.deepcopy(base).eval()
    model.dual.requires_grad_(False)
    for part in (model.image_encoder, model.dual.image_proj, model.dual.logit_scale):
        part.requires_grad_(train_image_tower)
    seed_everything(seed)
    c = model.config
    fresh = VLPModel(c)  # initialised under `seed`: the fusion layers and heads start from scratch
    for name in ("fusion", "itm_head", "mlm_head"):
        setattr(model, name, getattr(fresh, name))
    it, tt, zi, zt = embeddings(model, data)
    sample = vlp_batches(data, vocab, batch_size, seed)

    def batch(step: int) -> dict:
        b = sample(step)
        idx, rows, length = b["index"], b["rows"], b["ids"].shape[1]
        b.update(text_tokens=tt[rows, :length], text_emb=zt[rows])
        if not train_image_tower:
            b.update(image_tokens=it[idx], image_emb=zi[idx])
        return b

    history = fit(model, lambda m, b: vlp_loss(m, b, objectives)["loss"], batch,
                  TrainConfig(steps=steps, lr=lr, seed=seed, progress=False), callbacks=(clamp_logit_scale,))
    return model.eval(), history


def train_mae(images: Tensor, steps: int = 300, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
              vit: ViTConfig | None = None, mae: MAEConfig | None = None) -> tuple[MaskedAutoencoder, dict]:
    """A MAE with a fresh ViT encoder (initialised under `seed`) trained on `images` (N, 3, H, W)."""
    vit = ViTConfig(dim=64, depth=2, heads=4, mlp_ratio=2.0, image_size=images.shape[-1], patch_size=8,
                    pool="mean") if vit is None else vit
    seed_everything(seed)
    model = MaskedAutoencoder(VisionTransformer(vit), mae)

    def batch(step: int) -> dict:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return {"images": images[torch.randint(0, len(images), (batch_size,), generator=g)], "seed": step}

    def loss(m: MaskedAutoencoder, b: dict) -> Tensor:
        return m(b["images"], torch.Generator().manual_seed(seed * 1_000_003 + b["seed"]))["loss"]

    history = fit(model, loss, batch, TrainConfig(steps=steps, lr=lr, seed=seed, progress=False))
    return model.eval(), history


# ---- measurements --------------------------------------------------------------------------------------------

@torch.no_grad()
def embeddings(model: VLPModel, data: VLData) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(image tokens (N, 1 + P, D), text tokens (4N, L, D), image embeddings (N, E), text embeddings (4N, E))."""
    model.eval()
    it, tt = model.image_tokens(data.images), model.text_tokens(data.ids, data.mask)
    return it, tt, model.image_embedding(it), model.text_embedding(tt, data.mask)


@torch.no_grad()
def mlm_attribute_accuracy(model: VLPModel, data: VLData, vocab: CompactVocab, blind: bool = False) -> dict:
    """For each attribute (shape, colour, size) and each caption that names it, that one word replaced by [MASK]
    (the rest of the caption intact); the fraction of those words the MLM head recovers exactly, per attribute and
    over all. `blind`: the fusion layers get zero image tokens (as a blind model was trained)."""
    out, hits, total = {}, 0, 0
    images = data.images[data.owner]
    for kind, group in (("shape", SHAPES), ("color", COLORS), ("size", SIZES)):
        where = torch.isin(data.ids, torch.tensor([vocab.word_id(w) for w in group])) & data.mask.bool()  # (4N, L)
        rows = where.any(1).nonzero().flatten()
        masked = data.ids[rows].masked_fill(where[rows], vocab.mask_id)
        pred = model.mlm_logits(images[rows], masked, data.mask[rows], blind=blind).argmax(-1)  # (R, L)
        right = pred[where[rows]] == data.ids[rows][where[rows]]
        out[kind] = float(right.float().mean())
        hits, total = hits + int(right.sum()), total + right.numel()
    out["all"] = hits / total
    return out


def swapped_captions(data: VLData, vocab: CompactVocab, seed: int = 0) -> tuple[Tensor, Tensor]:
    """For each image's first caption, a copy with one attribute word (shape, colour, or size if named) replaced by
    another value of that attribute, chosen at random: (ids (N, L), which attribute was swapped (N,) 0/1/2). The
    copy is false of the image and differs from the true caption by a single word: a hard pair."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(len(data)) * 4
    ids = data.ids[rows].clone()
    facts = data.caption_facts[rows]
    kinds = torch.empty(len(data), dtype=torch.long)
    groups = (SHAPES, COLORS, SIZES)
    for i in range(len(data)):
        named = [k for k in range(3) if facts[i, k] >= 0]
        k = named[int(torch.randint(len(named), (1,), generator=g))]
        old = int(facts[i, k])
        new = (old + 1 + int(torch.randint(len(groups[k]) - 1, (1,), generator=g))) % len(groups[k])
        ids[i][ids[i] == vocab.word_id(groups[k][old])] = vocab.word_id(groups[k][new])
        kinds[i] = k
    return ids, kinds


@torch.no_grad()
def itm_pair_accuracy(model: VLPModel, data: VLData, vocab: CompactVocab, seed: int = 0) -> dict:
    """ITM on hard pairs: each image with its first caption and with that caption with one attribute word swapped
    (`swapped_captions`). "ranked": the fraction of images whose true caption gets the higher match probability
    (what re-ranking needs; chance 0.5); "thresholded": accuracy of the 2N decisions at p > 0.5; and "ranked"
    per swapped attribute."""
    it = model.image_tokens(data.images)
    rows = torch.arange(len(data)) * 4
    mask = data.mask[rows]
    neg_ids, kinds = swapped_captions(data, vocab, seed)
    p_pos = model.itm_head.match_probability(model.fuse(model.text_tokens(data.ids[rows], mask), mask, it)[:, 0])
    p_neg = model.itm_head.match_probability(model.fuse(model.text_tokens(neg_ids, mask), mask, it)[:, 0])
    ranked = p_pos > p_neg
    out = {"ranked": float(ranked.float().mean()),
           "thresholded": float(torch.cat([p_pos > 0.5, p_neg <= 0.5]).float().mean())}
    for k, name in enumerate(("shape", "color", "size")):
        out[f"ranked, {name} swapped"] = float(ranked[kinds == k].float().mean())
    return out


@torch.no_grad()
def itc_hard_pair_accuracy(model: VLPModel, data: VLData, retriever: VLPModel | None = None) -> float:
    """ITM on the pairs an ITC model finds hard: for each image, its first caption against the caption that is
    *false* of the image and scores highest by ITC cosine (`retriever`'s, default `model`'s). The fraction of
    images whose true caption gets the higher ITM match probability (chance 0.5): the decisions re-ranking makes."""
    retriever = model if retriever is None else retriever
    _, _, zi, zt = embeddings(retriever, data)
    sim = (zi @ zt.T).masked_fill(data.truth(), float("-inf"))  # (N, 4N), true captions excluded
    hardest = sim.argmax(1)  # (N,)
    it, tt, _, _ = embeddings(model, data)
    n = len(data)
    ar = torch.arange(n)
    p_pos = itm_scores(model, it, tt, data.mask, ar, ar * 4)
    p_neg = itm_scores(model, it, tt, data.mask, ar, hardest)
    return float((p_pos > p_neg).float().mean())


@torch.no_grad()
def itm_pair_logits(model: VLPModel, image_tokens: Tensor, text_tokens: Tensor, mask: Tensor, image_index: Tensor,
                    text_index: Tensor, batch_size: int = 1024) -> Tensor:
    """ITM logits (no match, match) of the pairs (image_index[k], text_index[k]) -> (K, 2)."""
    out = []
    for s in range(0, len(image_index), batch_size):
        i, t = image_index[s:s + batch_size], text_index[s:s + batch_size]
        out.append(model.itm_head(model.fuse(text_tokens[t], mask[t], image_tokens[i])[:, 0]))
    return torch.cat(out)


def itm_scores(model: VLPModel, image_tokens: Tensor, text_tokens: Tensor, mask: Tensor, image_index: Tensor,
               text_index: Tensor, batch_size: int = 1024) -> Tensor:
    """ITM match probability of the pairs (image_index[k], text_index[k]) -> (K,)."""
    return itm_pair_logits(model, image_tokens, text_tokens, mask, image_index, text_index,
                           batch_size).softmax(-1)[:, 1]


@torch.no_grad()
def i2t_recall_at_1(model: VLPModel, data: VLData, k: int = 16) -> dict:
    """Image->text R@1 over all 4N captions, a hit when the top caption is *true of* the image (data.truth):
    by ITC cosine alone, and after ITM re-ranks each image's top-k ITC candidates (ALBEF's and BLIP's retrieval:
    the fusion encoder scores only N*k pairs instead of N*4N), by the ITM match probability ("itm_rerank") and by
    BLIP's score, the match logit plus the ITC cosine ("itm+itc_rerank"; BLIP's `train_retrieval.py`). Also the
    truth-R@k of the ITC list, the ceiling of re-ranking."""
    validation.positive_int("k", k)
    it, tt, zi, zt = embeddings(model, data)
    sim = zi @ zt.T  # (N, 4N)
    truth = data.truth()
    top_sim, top = sim.topk(k, dim=1)  # (N, k)
    n = len(data)
    logits = itm_pair_logits(model, it, tt, data.mask, torch.arange(n).repeat_interleave(k), top.reshape(-1))
    logits = logits.view(n, k, 2)
    ar = torch.arange(n)

    def hit_rate(score: Tensor) -> float:  # score (N, k) over the candidates
        return float(truth[ar, top.gather(1, score.argmax(1, keepdim=True))[:, 0]].float().mean())

    return {"itc": float(truth[ar, top[:, 0]].float().mean()),
            "itm_rerank": hit_rate(logits.softmax(-1)[..., 1]),
            "itm+itc_rerank": hit_rate(logits[..., 1] + top_sim),
            f"itc_r@{k}": float(truth.gather(1, top).any(1).float().mean())}


@torch.no_grad()
def probe_accuracy(encoder: VisionTransformer, train_images: Tensor, train_labels: Tensor, test_images: Tensor,
                   test_labels: Tensor) -> float:
    """A logistic-regression probe (mmlab.evaluate.linear_probe_accuracy) on the encoder's pooled features."""
    encoder.eval()
    return linear_probe_accuracy(encoder.pooled(train_images), train_labels, encoder.pooled(test_images),
                                 test_labels, max_iter=2000)


@dataclass(frozen=True)
class LessonSettings:
    """The budget lesson 10 runs with (and its calibration, `benchmarks/calibration/lesson_10.py`)."""

    n_train: int = 2000
    n_val: int = 200
    dim: int = 32
    heads: int = 2
    itc_steps: int = 120
    itc_batch: int = 96
    itc_lr: float = 2e-3
    fusion_steps: int = 150  # the MLM heads, and the short ITM run of the re-ranking comparison
    itm_steps: int = 800  # the ITM heads: re-ranking beat ITC only once they had trained this long
    fusion_batch: int = 64
    fusion_lr: float = 5e-3
    rerank_k: int = 16
    mae_steps: int = 150
    mae_batch: int = 128
    mae_lr: float = 2e-3

    def vlp_config(self, vocab_size: int) -> VLPConfig:
        return VLPConfig(vocab_size=vocab_size, dim=self.dim, embed_dim=self.dim, heads=self.heads)

    def vit_config(self) -> ViTConfig:
        return ViTConfig(dim=self.dim, depth=2, heads=self.heads, mlp_ratio=2.0, image_size=32, patch_size=8,
                         pool="mean")


def run_lesson(seed: int, s: LessonSettings = LessonSettings()) -> dict[str, float]:
    """Every quantity lesson 10 asserts or reports, for one seed (the lesson itself runs seed 0)."""
    train, vocab = load_vl_data("train", s.n_train)
    val, _ = load_vl_data("val", s.n_val, vocab)
    out: dict[str, float] = {}
    base, _ = train_vlp(train, vocab, Objectives(itc=True), steps=s.itc_steps, batch_size=s.itc_batch,
                        lr=s.itc_lr, seed=seed, config=s.vlp_config(len(vocab)))
    for name, blind in (("mlm", False), ("mlm_blind", True)):
        m, _ = train_fusion(base, train, vocab, Objectives(itc=False, mlm=True, blind=blind), steps=s.fusion_steps,
                            batch_size=s.fusion_batch, lr=s.fusion_lr, seed=seed)
        for k, v in mlm_attribute_accuracy(m, val, vocab, blind=blind).items():
            out[f"{name} {k}"] = v
    for name, hard, steps in (("hard", True, s.itm_steps), ("random", False, s.itm_steps),
                              ("hard short", True, s.fusion_steps)):
        m, _ = train_fusion(base, train, vocab, Objectives(itc=False, itm=True, hard_negatives=hard),
                            steps=steps, batch_size=s.fusion_batch, lr=s.fusion_lr, seed=seed)
        if name != "hard short":
            out[f"itm {name}: itc-hard pairs"] = itc_hard_pair_accuracy(m, val)
            out[f"itm {name}: swapped pairs"] = itm_pair_accuracy(m, val, vocab)["ranked"]
        r = i2t_recall_at_1(m, val, k=s.rerank_k)
        out["itc R@1"], out[f"itm {name}: rerank R@1"] = r["itc"], r["itm_rerank"]
        out[f"itm {name}: blip-score rerank R@1"] = r["itm+itc_rerank"]
    mae, _ = train_mae(train.images, steps=s.mae_steps, batch_size=s.mae_batch, lr=s.mae_lr, seed=seed,
                       vit=s.vit_config())
    seed_everything(seed)
    scratch = VisionTransformer(s.vit_config())
    labels = {"shape": 0, "color": 1, "size": 2}
    for k, col in labels.items():
        ytr, yva = train.image_facts[:, col], val.image_facts[:, col]
        out[f"probe {k}: mae"] = probe_accuracy(mae.encoder, train.images, ytr, val.images, yva)
        out[f"probe {k}: random"] = probe_accuracy(scratch, train.images, ytr, val.images, yva)
    return out


__all__ = [
    "ATTRIBUTE_WORDS",
    "LessonSettings",
    "embeddings",
    "i2t_recall_at_1",
    "itc_hard_pair_accuracy",
    "itm_pair_accuracy",
    "itm_pair_logits",
    "itm_scores",
    "mlm_attribute_accuracy",
    "probe_accuracy",
    "run_lesson",
    "swapped_captions",
    "train_fusion",
    "train_mae",
    "train_vlp",
    "vlp_batches",
]
