"""Image-text matching (ITM): a binary head on the fused [CLS] token, trained on the positive pairs of a batch and
on negatives drawn from the contrastive similarities ("hard negatives", ALBEF, Li et al., 2021, section 3.2).

ALBEF samples, for each image, one negative text with probability proportional to softmax(similarity) over the
batch (and one negative image for each text), with the positive removed by zeroing the diagonal of the softmax.
`hard_negatives` does the same with two fixes for what breaks there: positives are given by a mask (so a second
caption of the same image, or a caption of an identical image, is never drawn as a "negative"), and it computes in
float32 and samples with the Gumbel-max trick instead of `torch.multinomial`, which crashes on rows with inf, NaN
or zero sum. A row with no negative left, or a NaN/+inf similarity, is a ValueError.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmlab import validation


def hard_negatives(similarity: Tensor, positive_mask: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """For each row i an index j with probability proportional to exp(similarity[i, j]) over the j where
    `positive_mask[i, j]` is False: (B, M) floating, (B, M) bool -> (B,) int64. Never a positive.

    Computed in float32 (a softmax over bf16 or fp16 logits loses the small probabilities). j with similarity -inf
    has probability 0. Checked on host tensors: a NaN or +inf similarity, or a row without any negative of finite
    similarity, is a ValueError naming the row."""
    validation.require_tensor("similarity", similarity)
    validation.require_tensor("positive_mask", positive_mask)
    if similarity.ndim != 2 or 0 in similarity.shape:
        raise ValueError(f"similarity must be a non-empty (B, M) tensor, got shape {tuple(similarity.shape)}")
    if not similarity.is_floating_point():
        raise TypeError(f"similarity must be floating point, got {similarity.dtype}")
    if positive_mask.dtype != torch.bool:
        raise TypeError(f"positive_mask must be a bool tensor, got {positive_mask.dtype}")
    if tuple(positive_mask.shape) != tuple(similarity.shape):
        raise ValueError(f"positive_mask must have the shape of similarity {tuple(similarity.shape)}, "
                         f"got {tuple(positive_mask.shape)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    s = similarity.detach().float()  # (B, M)
    negatives = ~positive_mask.to(s.device)
    if validation.on_host(s):
        bad = torch.isnan(s) | (s == float("inf"))
        if bad.any():
            i, j = (int(k) for k in bad.nonzero()[0])
            raise ValueError(f"similarity[{i}, {j}] is {float(s[i, j])}: NaN and +inf have no sampling probability")
        usable = negatives & torch.isfinite(s)
        empty = (~usable.any(dim=1)).nonzero().flatten()
        if empty.numel():
            raise ValueError(f"similarity row {int(empty[0])} has no negative: every entry is a positive "
                             "(positive_mask) or has similarity -inf")
    logits = s.masked_fill(~negatives, float("-inf"))
    device = generator.device if generator is not None else s.device
    u = torch.rand(s.shape, generator=generator, device=device).to(s.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(torch.float32).tiny)))  # finite: u in [tiny, 1)
    return (logits + gumbel).argmax(dim=1)  # Gumbel-max: an exact draw from softmax(logits) per row


class ITMHead(nn.Module):
    """Linear head on the fused [CLS] feature: (B, D) -> (B, 2) logits (index 1 = the pair matches)."""

    def __init__(self, dim: int):
        super().__init__()
        validation.positive_int("dim", dim)
        self.proj = nn.Linear(dim, 2)

    def forward(self, cls: Tensor) -> Tensor:
        return self.proj(cls)

    def match_probability(self, cls: Tensor) -> Tensor:
        """(B, D) -> (B,) probability that each pair matches."""
        return self(cls).softmax(dim=-1)[:, 1]


def itm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of (B, 2) ITM logits against (B,) labels (1 = matching pair, 0 = not)."""
    validation.require_tensor("logits", logits)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"logits must be (B, 2), got shape {tuple(logits.shape)}")
    y = validation.class_indices("labels", labels, logits.shape[0])
    if validation.on_host(y) and y.numel() and int(y.max()) > 1:
        raise ValueError(f"labels must be 0 or 1, got {int(y.max())}")
    return F.cross_entropy(logits, y.to(logits.device))


def itm_pairs(positive_mask: Tensor, sim_i2t: Tensor, sim_t2i: Tensor, hard: bool = True,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """ALBEF's ITM batch from B positive pairs: (image index (3B,), text index (3B,), label (3B,)).

    Rows: the B positives (i, i); for each image i a negative text; for each text i a negative image. `hard`
    draws them with `hard_negatives` from the similarities (B, B) (`positive_mask` (B, B) marks pairs that
    match, e.g. same attributes); otherwise uniformly among the non-positives (random negatives)."""
    b = positive_mask.shape[0]
    if not hard:
        sim_i2t = torch.zeros_like(sim_i2t, dtype=torch.float32)
        sim_t2i = torch.zeros_like(sim_t2i, dtype=torch.float32)
    neg_text = hard_negatives(sim_i2t, positive_mask, generator)  # (B,) a text for each image
    neg_image = hard_negatives(sim_t2i, positive_mask.T, generator)  # (B,) an image for each text
    ar = torch.arange(b, device=neg_text.device)
    images = torch.cat([ar, ar, neg_image])
    texts = torch.cat([ar, neg_text, ar])
    labels = torch.cat([torch.ones(b, dtype=torch.long), torch.zeros(2 * b, dtype=torch.long)]).to(ar.device)
    return images, texts, labels
