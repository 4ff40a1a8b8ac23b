"""Masking for pretraining: BERT's masked-language-model corruption and MAE's random patch masking.

`mask_tokens` follows BERT's recipe (Devlin et al., 2019, section 3.1 and appendix A.1), which ALBEF reuses for MLM
conditioned on the image (BLIP has no MLM: its objectives are ITC, ITM and autoregressive language modelling), in
its per-token form (as Hugging Face's DataCollatorForLanguageModeling and ALBEF's code): each eligible position is
chosen independently with probability 0.15, where BERT's reference create_pretraining_data.py picks round(0.15 n)
positions per sequence (capped at max_predictions_per_seq). Of the chosen, 80% become [MASK], 10% a random token
(here only ordinary, non-special ids; BERT draws from the whole vocabulary) and 10% stay, and the loss is taken at
the chosen positions only (`labels` = -100 elsewhere, the `ignore_index` of `torch.nn.functional.cross_entropy`).

`random_masking` follows MAE (He et al., 2022, section 3 "Masking" and its reference implementation): per row a
random permutation from sorted uniform noise; the first `keep` tokens of the permutation stay visible, and
`ids_restore` (the inverse permutation) puts the decoder's sequence back in patch order.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from mmlab import validation

IGNORE_INDEX = -100  # labels at positions that carry no loss (cross_entropy's default ignore_index)


def _generator(name: str, generator) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def _rand(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniforms in [0, 1) drawn on the generator's device (CPU for None), then moved to `like`'s device."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device).to(like.device)


def _special_ids(special_token_ids, vocab_size: int) -> list[int]:
    if isinstance(special_token_ids, (str, bytes)) or not isinstance(special_token_ids, Iterable):
        raise TypeError(f"special_token_ids must be a collection of ints, got {type(special_token_ids).__name__}")
    return [validation.int_in_range("special_token_ids", i, 0, vocab_size - 1) for i in special_token_ids]


def mask_tokens(input_ids: Tensor, attention_mask: Tensor, *, vocab_size: int, mask_token_id: int,
                special_token_ids: Iterable[int], prob: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT-style masking, per-token variant: `(masked_ids, labels)`, both (B, L) int64; the inputs are not modified.

    Eligible positions: `attention_mask` true and an id that is not special (`special_token_ids`, and
    `mask_token_id` itself). Each eligible position is chosen independently with probability `prob`; a chosen
    position becomes `mask_token_id` with probability 0.8, a uniformly random non-special id in `[0, vocab_size)`
    with probability 0.1, and keeps its id with probability 0.1. `labels` holds the original id at the chosen
    positions and -100 elsewhere.
    """
    validation.require_tensor("input_ids", input_ids)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"input_ids must be int64 or int32, got {input_ids.dtype}")
    validation.require_tensor("attention_mask", attention_mask)
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                         f"got {tuple(attention_mask.shape)}")
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise TypeError(f"attention_mask must be bool or integer (1 = real token), got {attention_mask.dtype}")
    validation.positive_int("vocab_size", vocab_size)
    validation.int_in_range("mask_token_id", mask_token_id, 0, vocab_size - 1)
    special = sorted(set(_special_ids(special_token_ids, vocab_size)) | {mask_token_id})
    prob = validation.finite_float("prob", prob, 0.0, 1.0)
    generator = _generator("generator", generator)
    if validation.on_host(input_ids) and input_ids.numel():
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(f"input_ids must be in [0, {vocab_size}), got range [{low}, {high}]")
    is_special = torch.zeros(vocab_size, dtype=torch.bool)
    is_special[special] = True
    ordinary = (~is_special).nonzero().flatten()  # the ids a random replacement may take
    if ordinary.numel() == 0:
        raise ValueError(f"every id in [0, {vocab_size}) is special: no id is left for random replacement")

    ids = input_ids.long()
    eligible = attention_mask.to(device=ids.device, dtype=torch.bool) & ~is_special.to(ids.device)[ids]  # (B, L)
    chosen = eligible & (_rand(ids.shape, ids, generator) < prob)
    action = _rand(ids.shape, ids, generator)  # < 0.8: [MASK]; [0.8, 0.9): random id; >= 0.9: unchanged
    pick = (_rand(ids.shape, ids, generator) * ordinary.numel()).long().clamp_max(ordinary.numel() - 1)
    random_ids = ordinary.to(ids.device)[pick]  # (B, L) uniform over the non-special ids
    masked = torch.where(chosen & (action < 0.8), torch.full_like(ids, mask_token_id), ids)
    masked = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, masked)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return masked, labels


def keep_count(num_tokens: int, mask_ratio: float) -> int:
    """How many of `num_tokens` stay visible: int(N * (1 - mask_ratio)), at least 1."""
    return max(1, int(num_tokens * (1 - mask_ratio)))


def random_masking(tokens: Tensor, mask_ratio: float,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """MAE's per-row random masking: `(visible, mask, ids_restore)`.

    tokens (B, N, D); keep = int(N * (1 - mask_ratio)), at least 1. visible (B, keep, D): the kept tokens in a
    random order; mask (B, N) bool, True = removed; ids_restore (B, N) int64, the inverse permutation: gathering
    `cat([visible, fill], 1)` with it along dim 1 puts every kept token back at its position and the `fill` rows
    (B, N - keep, D) at the removed ones. The input is not modified.
    """
    validation.require_tensor("tokens", tokens)
    if tokens.ndim != 3 or tokens.shape[1] == 0:
        raise ValueError(f"tokens must be (B, N, D) with N >= 1, got shape {tuple(tokens.shape)}")
    mask_ratio = validation.finite_float("mask_ratio", mask_ratio, 0.0, 1.0)
    generator = _generator("generator", generator)
    b, n, d = tokens.shape
    keep = keep_count(n, mask_ratio)
    noise = _rand((b, n), tokens, generator)  # (B, N)
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)  # ascending: the first `keep` stay visible
    ids_restore = torch.argsort(ids_shuffle, dim=1, stable=True)  # the inverse permutation
    visible = torch.gather(tokens, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))  # (B, keep, D)
    removed_in_shuffled_order = torch.arange(n, device=tokens.device).expand(b, n) >= keep  # (B, N)
    mask = torch.gather(removed_in_shuffled_order, 1, ids_restore)  # (B, N), back in patch order
    return visible, mask, ids_restore


def restore(visible: Tensor, fill: Tensor, ids_restore: Tensor) -> Tensor:
    """The inverse of `random_masking`'s shuffle: (B, keep, D) and (B, N - keep, D) -> (B, N, D) in patch order."""
    x = torch.cat([visible, fill], dim=1)  # (B, N, D) in shuffled order
    if ids_restore.shape != x.shape[:2]:
        raise ValueError(f"ids_restore must be (B, N) = {tuple(x.shape[:2])}, got {tuple(ids_restore.shape)}")
    return torch.gather(x, 1, ids_restore[..., None].expand(-1, -1, x.shape[2]))
