"""The three vision-language paradigms side by side (lesson 10b): a dual encoder (CLIP), a fusion encoder over two
towers (ALBEF) and a unified multiway transformer (VLMo), trained on the same data with the same budget, and the
measurements that compare them: retrieval (ITC ranking, ITM re-ranking of the top k, ITM over every pair), its cost
(encoder passes counted, time measured), and VQA-lite with a small head on frozen features.

`run_objective_ablation(seed)` is the recorded ablation the lesson prints (`benchmarks/vlp_objective_ablation.py`);
the lesson's own numbers are calibrated by re-running its cells (`benchmarks/calibration/notebook_seeds.py`).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmlab import validation
from mmlab.data.shapes_text import ANSWERS
from mmlab.pretrain.data import CompactVocab, VLData, load_vl_data
from mmlab.pretrain.recipes import (
    embeddings,
    i2t_recall_at_1,
    itm_pair_accuracy,
    itm_pair_logits,
    probe_accuracy,
    train_vlp,
)
from mmlab.pretrain.unified import UnifiedConfig, UnifiedVLPModel
from mmlab.pretrain.vlp import Objectives, VLPConfig, VLPModel
from mmlab.runtime import seed_everything
from mmlab.train import TrainConfig, fit

QUESTION_TYPES = ("what colour", "what shape", "what size", "is it", "is the")  # the five templates' openings


@dataclass(frozen=True)
class ParadigmSettings:
    """The budget lesson 10b runs with: every model gets the same data, steps, batch and learning rate."""

    n_train: int = 2000
    n_val: int = 200
    dim: int = 48
    heads: int = 3
    steps: int = 500
    batch: int = 64
    lr: float = 1e-3  # benchmarks/results/vit_shape_lr_sweep.md: the image tower learns shape worse at 2e-3 or more
    rerank_k: int = 16
    head_steps: int = 400
    head_lr: float = 3e-3

    def fusion_config(self, vocab_size: int) -> VLPConfig:
        return VLPConfig(vocab_size=vocab_size, dim=self.dim, embed_dim=self.dim, heads=self.heads)

    def unified_config(self, vocab_size: int) -> UnifiedConfig:
        return UnifiedConfig(vocab_size=vocab_size, dim=self.dim, embed_dim=self.dim, heads=self.heads, depth=3,
                             vl_layers=1)


def train_paradigm(name: str, train: VLData, vocab: CompactVocab, s: ParadigmSettings, seed: int = 0,
                   objectives: Objectives | None = None):
    """"dual": a VLPModel trained on ITC only (its fusion layers stay at initialisation and are not used);
    "fusion": a VLPModel on ITC + ITM (hard negatives); "unified": a UnifiedVLPModel on ITC + ITM. `objectives`
    overrides the default of "fusion" (the objective ablation). -> (model, history)."""
    validation.one_of("paradigm", name, ("dual", "fusion", "unified"))
    if objectives is None:
        objectives = Objectives(itc=True, itm=name != "dual")
    config = s.unified_config(len(vocab)) if name == "unified" else s.fusion_config(len(vocab))
    return train_vlp(train, vocab, objectives, steps=s.steps, batch_size=s.batch, lr=s.lr, seed=seed, config=config)


def parameter_count(model: nn.Module, paradigm: str) -> int:
    """Parameters a paradigm uses: the dual encoder's towers, projections and temperature only (not the unused
    fusion layers, heads and MAE decoder of its VLPModel); the others without the MLM head and MAE decoder."""
    skip = ("fusion.", "itm_head.", "mlm_head.", "mae.") if paradigm == "dual" else ("mlm_head.", "mae.")
    # named_parameters lists a shared tensor once, under its first name (the MAE's encoder is the image tower)
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith(skip))


@torch.no_grad()
def itm_best_captions(model: VLPModel | UnifiedVLPModel, data: VLData, images: int | None = None) -> Tensor:
    """For each of the first `images` images (all by default), the caption among all 4N with the highest ITM match
    probability, when ITM scores *every* (image, caption) pair (no ITC shortlist) -> (images,) caption indices."""
    it, tt, _, _ = embeddings(model, data)
    n = len(data) if images is None else images
    m = len(data.captions)
    logits = itm_pair_logits(model, it, tt, data.mask, torch.arange(n).repeat_interleave(m),
                             torch.arange(m).repeat(n)).view(n, m, 2)
    return logits.softmax(-1)[..., 1].argmax(1)  # (n,)


def full_itm_recall(model: VLPModel | UnifiedVLPModel, data: VLData, images: int | None = None) -> float:
    """Image->text R@1 of `itm_best_captions`: a hit when the chosen caption is true of the image."""
    best = itm_best_captions(model, data, images)
    return float(data.truth()[torch.arange(len(best)), best].float().mean())


@contextmanager
def counting_rows(model: nn.Module, *methods: str):
    """Within the block, count the rows (first argument's length) passed to each of `model`'s `methods`:
    yields {method: rows}. The methods are wrapped on this instance only and restored afterwards."""
    counts = dict.fromkeys(methods, 0)
    for name in methods:
        original = getattr(model, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            counts[_name] += len(args[0])
            return _original(*args, **kwargs)

        object.__setattr__(model, name, counted)  # an instance attribute shadows the method
    try:
        yield counts
    finally:
        for name in methods:
            object.__delattr__(model, name)


def retrieval_cost(model: VLPModel | UnifiedVLPModel, data: VLData, k: int, repeats: int = 3,
                   full_images: int = 10) -> dict[str, float]:
    """What scoring every image of `data` against every caption costs, three ways: ITC (N image and M text
    encodings, then one N x M matrix product), ITC + ITM re-ranking of the top k (plus N*k fusion passes) and ITM
    on every pair (N*M fusion passes). Passes are counted while the work runs (`counting_rows` on `image_tokens`,
    `text_tokens` and `fuse`); the every-pair work runs on `full_images` images, its count and time scaled by
    N / full_images. Seconds are the median of `repeats` runs on this machine."""
    validation.positive_int("repeats", repeats)
    n, m = len(data), len(data.captions)
    validation.int_in_range("full_images", full_images, 1, n)

    def median_seconds(work) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    def itc() -> tuple[Tensor, Tensor, Tensor]:
        it, tt, zi, zt = embeddings(model, data)
        return it, tt, zi @ zt.T

    it, tt, _ = itc()

    def rerank() -> None:
        it_, tt_, sim_ = itc()
        top_ = sim_.topk(k, dim=1).indices
        itm_pair_logits(model, it_, tt_, data.mask, torch.arange(n).repeat_interleave(k), top_.reshape(-1))

    def every_pair() -> None:
        itm_pair_logits(model, it, tt, data.mask, torch.arange(full_images).repeat_interleave(m),
                        torch.arange(m).repeat(full_images))

    with counting_rows(model, "image_tokens", "text_tokens", "fuse") as c_itc:
        itc()
    with counting_rows(model, "fuse") as c_rerank:
        rerank()
    with counting_rows(model, "fuse") as c_every:
        every_pair()
    t_itc = median_seconds(itc)
    return {"unimodal passes": c_itc["image_tokens"] + c_itc["text_tokens"],
            "fusion passes, ITC": c_itc["fuse"], "fusion passes, re-rank": c_rerank["fuse"],
            "fusion passes, every pair": c_every["fuse"] * n // full_images,
            "seconds, ITC": t_itc, "seconds, ITC + re-rank": median_seconds(rerank),
            "seconds, every pair": t_itc + median_seconds(every_pair) * n / full_images}


@torch.no_grad()
def pair_features(model: VLPModel | UnifiedVLPModel, data: VLData, paradigm: str) -> Tensor:
    """A frozen feature of each (image, question) pair for the VQA head: the dual encoder's two embeddings side by
    side ((N, 2E): it has no fusion); the fused [CLS] of the question attending to the image otherwise ((N, D))."""
    model.eval()
    it = model.image_tokens(data.images)
    qt = model.text_tokens(data.question_ids, data.question_mask)
    if paradigm == "dual":
        return torch.cat([model.image_embedding(it), model.text_embedding(qt, data.question_mask)], 1)
    return model.fuse(qt, data.question_mask, it)[:, 0]


def question_type(question: str) -> int:
    """Index into QUESTION_TYPES of a Shapes-World VQA-lite question."""
    for i, opening in enumerate(QUESTION_TYPES):
        if question.startswith(opening):
            return i
    raise ValueError(f"not a VQA-lite question: {question!r}")


def vqa_head_accuracy(train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor, val_questions: list[str],
                      s: ParadigmSettings, seed: int = 0) -> dict[str, float]:
    """A small head (one hidden layer of 64, GELU) trained on frozen pair features to pick one of the 18 answers;
    validation accuracy over all questions and per question type."""
    seed_everything(seed)
    head = nn.Sequential(nn.LayerNorm(train_x.shape[1]), nn.Linear(train_x.shape[1], 64), nn.GELU(),
                         nn.Linear(64, len(ANSWERS)))

    def batch(step: int) -> dict:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, len(train_x), (128,), generator=g)
        return {"x": train_x[idx], "y": train_y[idx]}

    fit(head, lambda h, b: nn.functional.cross_entropy(h(b["x"]), b["y"]), batch,
        TrainConfig(steps=s.head_steps, lr=s.head_lr, seed=seed, progress=False))
    with torch.no_grad():
        right = head.eval()(val_x).argmax(1) == val_y
    kinds = torch.tensor([question_type(q) for q in val_questions])
    out = {"all": float(right.float().mean())}
    for i, name in enumerate(QUESTION_TYPES):
        out[name] = float(right[kinds == i].float().mean())
    return out


def vqa_accuracy(model, train: VLData, val: VLData, paradigm: str, s: ParadigmSettings,
                 seed: int = 0) -> dict[str, float]:
    return vqa_head_accuracy(pair_features(model, train, paradigm), train.answers, pair_features(model, val, paradigm),
                             val.answers, val.questions, s, seed)


def run_objective_ablation(seed: int, s: ParadigmSettings = ParadigmSettings()) -> dict[str, dict[str, float]]:
    """The fusion-encoder model trained on ITC, ITC+ITM, ITC+ITM+MLM and ITC+ITM+MLM+MIM (one change per row),
    same budget: per arm the ITC and re-ranked R@1 (BLIP's score; None without ITM), ITM's choice between a true
    caption and the same caption with its colour word swapped (None without ITM), VQA-lite with the head on the
    fused features and on the two embeddings, and a linear probe of the image tower's pooled features for shape
    (the attribute these towers learn last)."""
    train, vocab = load_vl_data("train", s.n_train)
    val, _ = load_vl_data("val", s.n_val, vocab)
    arms = {"ITC": Objectives(itc=True), "ITC+ITM": Objectives(itc=True, itm=True),
            "ITC+ITM+MLM": Objectives(itc=True, itm=True, mlm=True),
            "ITC+ITM+MLM+MIM": Objectives(itc=True, itm=True, mlm=True, mim=True)}
    out = {}
    for arm, objectives in arms.items():
        model, _ = train_paradigm("fusion", train, vocab, s, seed, objectives)
        r = i2t_recall_at_1(model, val, k=s.rerank_k)
        swaps = itm_pair_accuracy(model, val, vocab) if objectives.itm else {}
        out[arm] = {"ITC R@1": r["itc"], "re-ranked R@1": r["itm+itc_rerank"] if objectives.itm else None,
                    "ITM colour swaps": swaps.get("ranked, color swapped"),
                    "VQA (fused)": vqa_accuracy(model, train, val, "fusion", s, seed)["all"],
                    "VQA (dual)": vqa_accuracy(model, train, val, "dual", s, seed)["all"],
                    "shape probe": probe_accuracy(model.image_encoder, train.images, train.image_facts[:, 0],
                                                  val.images, val.image_facts[:, 0])}
    return out


__all__ = [
    "QUESTION_TYPES",
    "ParadigmSettings",
    "counting_rows",
    "full_itm_recall",
    "itm_best_captions",
    "pair_features",
    "parameter_count",
    "question_type",
    "retrieval_cost",
    "run_objective_ablation",
    "train_paradigm",
    "vqa_accuracy",
    "vqa_head_accuracy",
]
