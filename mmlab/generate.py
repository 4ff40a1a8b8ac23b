"""Model-agnostic decoding: greedy search, beam search, and sampling with temperature, top-k and top-p.

Every function drives a `logits_fn(tokens (B, T)) -> (B, V)` that returns the next-token logits for the last
position of each row, so any model (a captioner, a language model, a lookup table in a test) can be decoded.

A `logits_fn` that keeps state per row (a decoder's KV cache, its image features) may define a method
`reorder(rows)`: `beam_search` calls it with a LongTensor `rows` whenever it re-selects rows, so that row i of
the next call continues row `rows[i]` of the last one; the first call expands each prompt into `beam_size`
rows (`rows = [0, 0, ..., 1, 1, ...]`). `greedy` and `sample` never reorder rows: their row i stays row i.

Rows that have emitted `eos_id` are padded with `eos_id` and still passed to `logits_fn` (their logits are
ignored), and decoding stops early once every row has finished, so the output has T + n columns with
n <= max_new_tokens.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mmlab import validation

__all__ = ["beam_search", "greedy", "next_token_probabilities", "sample"]

LogitsFn = Callable[[Tensor], Tensor]


# ---- checks ----------------------------------------------------------------------------------------------

def _check_prompt(prompt: Any) -> Tensor:
    validation.require_tensor("prompt", prompt)
    if prompt.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"prompt must hold integer token ids (int64 or int32), got {prompt.dtype}")
    if prompt.ndim != 2:
        raise ValueError(f"prompt must be a (B, T) tensor of token ids, got shape {tuple(prompt.shape)}")
    if prompt.shape[0] == 0 or prompt.shape[1] == 0:
        raise ValueError(f"prompt is empty: shape {tuple(prompt.shape)}; every row needs at least one token "
                         "(e.g. a begin-of-sequence id)")
    if validation.on_host(prompt) and int(prompt.min()) < 0:
        raise ValueError(f"prompt holds a negative token id {int(prompt.min())}")
    return prompt.long()


def _check_common(logits_fn: Any, prompt: Any, max_new_tokens: Any, eos_id: Any) -> Tensor:
    validation.require_callable("logits_fn", logits_fn)
    prompt = _check_prompt(prompt)
    validation.positive_int("max_new_tokens", max_new_tokens)
    if eos_id is not None:
        validation.non_negative_int("eos_id", eos_id)
    return prompt


def _next_logits(logits_fn: LogitsFn, tokens: Tensor, eos_id: int | None) -> Tensor:
    """logits_fn(tokens) checked: a floating (B, V) tensor with eos_id < V."""
    logits = logits_fn(tokens)
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        got = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise TypeError(f"logits_fn must return a floating tensor (B, V), got {got}")
    if logits.ndim != 2 or logits.shape[0] != tokens.shape[0] or logits.shape[1] == 0:
        raise ValueError(f"logits_fn must return (B, V) = ({tokens.shape[0]}, V) next-token logits for tokens "
                         f"of shape {tuple(tokens.shape)}, got {tuple(logits.shape)}")
    if eos_id is not None and eos_id >= logits.shape[1]:
        raise ValueError(f"eos_id {eos_id} is not a token of the vocabulary of size {logits.shape[1]}")
    return logits.float()


# ---- greedy ----------------------------------------------------------------------------------------------

def greedy(logits_fn: LogitsFn, prompt: Tensor, max_new_tokens: int, eos_id: int | None = None) -> Tensor:
    """Append the most likely next token, up to `max_new_tokens` times: (B, T) -> (B, T + n), n <= max_new_tokens.

    A row that has emitted `eos_id` is padded with `eos_id`; decoding stops when every row has."""
    tokens = _check_common(logits_fn, prompt, max_new_tokens, eos_id)
    return _decode(logits_fn, tokens, max_new_tokens, eos_id, lambda logits: logits.argmax(dim=-1))


def _decode(logits_fn: LogitsFn, tokens: Tensor, max_new_tokens: int, eos_id: int | None,
            choose: Callable[[Tensor], Tensor]) -> Tensor:
    """The loop greedy and sample share: `choose` maps logits (B, V) to the next tokens (B,)."""
    done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    for _ in range(max_new_tokens):
        nxt = choose(_next_logits(logits_fn, tokens, eos_id))  # (B,)
        if eos_id is not None:
            nxt = nxt.masked_fill(done, eos_id)
            done = done | (nxt == eos_id)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)  # (B, T + 1)
        if eos_id is not None and bool(done.all()):
            break
    return tokens


# ---- sampling --------------------------------------------------------------------------------------------

def _check_sampling(temperature: Any, top_k: Any, top_p: Any) -> None:
    validation.finite_float("temperature", temperature, 0, low_open=True)
    if top_k is not None:
        validation.positive_int("top_k", top_k)
    if top_p is not None:
        validation.finite_float("top_p", top_p, 0, 1, low_open=True)


def next_token_probabilities(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                             top_p: float | None = None) -> Tensor:
    """The distribution `sample` draws from: softmax(logits / temperature) restricted to the `top_k` most likely
    tokens, then to the nucleus (Holtzman et al., 2020): the fewest most likely tokens whose probability sums to
    at least `top_p`; renormalised. logits (B, V) -> probabilities (B, V). Ties at the top-k boundary keep the
    token of lower index (torch.topk's order)."""
    validation.require_tensor("logits", logits)
    if logits.ndim != 2 or 0 in logits.shape:
        raise ValueError(f"logits must be a non-empty (B, V) tensor, got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    _check_sampling(temperature, top_k, top_p)
    scaled = logits.float() / temperature  # (B, V)
    if top_k is not None and top_k < scaled.shape[1]:
        kth = scaled.topk(top_k, dim=-1)
        keep = torch.zeros_like(scaled, dtype=torch.bool).scatter_(1, kth.indices, True)
        scaled = scaled.masked_fill(~keep, float("-inf"))
    probs = scaled.softmax(dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
        before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the more likely tokens
        keep_sorted = before < top_p  # the first token always stays (before = 0)
        keep = torch.zeros_like(keep_sorted).scatter_(1, order, keep_sorted)
        probs = probs.masked_fill(~keep, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample(logits_fn: LogitsFn, prompt: Tensor, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """Draw each next token from `next_token_probabilities(logits, temperature, top_k, top_p)`:
    (B, T) -> (B, T + n), n <= max_new_tokens, padded with `eos_id` as in `greedy`.

    `generator` (a torch.Generator on the logits' device) makes the draws repeatable without touching the
    global RNG; without one the global RNG is used."""
    tokens = _check_common(logits_fn, prompt, max_new_tokens, eos_id)
    _check_sampling(temperature, top_k, top_p)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")

    def choose(logits: Tensor) -> Tensor:
        probs = next_token_probabilities(logits, temperature, top_k, top_p)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    return _decode(logits_fn, tokens, max_new_tokens, eos_id, choose)


# ---- beam search -----------------------------------------------------------------------------------------

def beam_search(logits_fn: LogitsFn, prompt: Tensor, max_new_tokens: int, beam_size: int,
                eos_id: int | None = None, length_penalty: float = 0.0) -> tuple[Tensor, Tensor]:
    """Keep the `beam_size` best hypotheses per row; return each row's best one and its score.

    score(h) = (sum of log-softmax of h's generated tokens, its `eos_id` included) / len(h) ** length_penalty,
    with len(h) the number of generated tokens up to and including `eos_id`. Every step ranks all candidates by
    this score: each live hypothesis extended by every token, and each finished hypothesis as it is (it keeps
    its slot while it stays among the best). So nothing is pruned while `beam_size` is at least the number of
    candidates (V ** max_new_tokens suffices) and the search is exact, and `beam_size=1` is `greedy`.
    Decoding stops when every kept hypothesis has finished or after `max_new_tokens` steps.

    Returns tokens (B, T + n), padded with `eos_id` after a hypothesis's end, and scores (B,) float32.
    """
    prompt = _check_common(logits_fn, prompt, max_new_tokens, eos_id)
    k = validation.positive_int("beam_size", beam_size)
    lp = validation.finite_float("length_penalty", length_penalty)
    b, device = prompt.shape[0], prompt.device
    reorder = getattr(logits_fn, "reorder", None)
    start = torch.arange(b, device=device).repeat_interleave(k)  # (B*K,) each prompt copied into K beams
    if reorder is not None:
        reorder(start)
    tokens = prompt[start]  # (B*K, T)
    total = torch.full((b, k), float("-inf"), device=device)
    total[:, 0] = 0.0  # one live beam per row at first; the copies must not be chosen twice
    length = torch.zeros(b, k, device=device)
    done = torch.zeros(b, k, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        logp = _next_logits(logits_fn, tokens, eos_id).log_softmax(dim=-1)  # (B*K, V)
        v = logp.shape[1]
        logp = logp.view(b, k, v)
        # a finished beam has one candidate: itself, unchanged (its eos padding scores 0 and adds no length)
        stay = torch.full((v,), float("-inf"), device=device)
        stay[eos_id if eos_id is not None else 0] = 0.0
        logp = torch.where(done[..., None], stay, logp)
        cand_total = total[..., None] + logp  # (B, K, V)
        cand_length = (length + (~done).float())[..., None].expand(b, k, v)
        cand_score = cand_total / _length_norm(cand_length, lp)  # (B, K, V)
        best = cand_score.view(b, k * v).topk(k, dim=-1).indices  # (B, K) indices into K*V
        beam, tok = best // v, best % v  # (B, K) which beam each winner extends, with which token
        total = cand_total.view(b, k * v).gather(1, best)
        length = cand_length.reshape(b, k * v).gather(1, best)
        was_done = done.gather(1, beam)
        done = was_done | (tok == eos_id) if eos_id is not None else was_done
        rows = (beam + torch.arange(b, device=device)[:, None] * k).flatten()  # (B*K,) into the previous rows
        if reorder is not None:
            reorder(rows)
        tokens = torch.cat([tokens[rows], tok.flatten()[:, None]], dim=1)  # (B*K, T + 1)
        if eos_id is not None and bool(done.all()):
            break
    score = total / _length_norm(length, lp)  # (B, K)
    pick = score.argmax(dim=-1)  # (B,)
    rows = pick + torch.arange(b, device=device) * k
    return tokens[rows], score.gather(1, pick[:, None])[:, 0]


def _length_norm(length: Tensor, length_penalty: float) -> Tensor:
    """length ** length_penalty, with length 0 (a beam that never started) counting as 1."""
    return length.clamp_min(1.0) ** length_penalty if length_penalty != 0.0 else torch.ones_like(length)
