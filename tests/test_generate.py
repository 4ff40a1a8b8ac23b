"""mmlab.generate against brute-force enumeration on tiny vocabularies, and its bad-input errors."""
import itertools
import math

import pytest
import torch

from mmlab.generate import beam_search, greedy, next_token_probabilities, sample


class ToyLM:
    """A fixed random recurrent net: the next-token logits depend on the whole prefix, not only the last token."""

    def __init__(self, vocab: int = 3, seed: int = 0, width: int = 8):
        g = torch.Generator().manual_seed(seed)
        self.embed = torch.randn(vocab, width, generator=g)
        self.recur = torch.randn(width, width, generator=g) * 0.7
        self.head = torch.randn(width, vocab, generator=g) * 2.0
        self.calls = 0

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = torch.zeros(tokens.shape[0], self.embed.shape[1])
        for t in range(tokens.shape[1]):
            h = torch.tanh(h @ self.recur + self.embed[tokens[:, t]])
        return h @ self.head  # (B, V)


def hypotheses(lm, prompt_row, n, eos):
    """Every hypothesis of at most n generated tokens (ending at eos, or at length n): (tokens, sum of log-probs)."""
    out, vocab = [], lm.embed.shape[0]
    for length in range(1, n + 1):
        for seq in itertools.product(range(vocab), repeat=length):
            if eos is not None and (eos in seq[:-1] or (length < n and seq[-1] != eos)):
                continue  # not a hypothesis: eos in the middle, or stopped early without eos
            if eos is None and length < n:
                continue
            tokens = torch.tensor([list(prompt_row) + list(seq)])
            logp = sum(float(lm(tokens[:, :len(prompt_row) + i]).log_softmax(-1)[0, tok]) for i, tok in enumerate(seq))
            out.append((list(seq), logp))
    return out


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("eos", [2, None])
def test_beam_search_is_exact_when_the_beam_holds_every_candidate(length_penalty, eos):
    vocab, n = 3, 3
    lm = ToyLM(vocab, seed=1)
    prompts = torch.tensor([[0], [1], [2]])
    tokens, scores = beam_search(lm, prompts, n, beam_size=vocab**n, eos_id=eos, length_penalty=length_penalty)
    for row, prompt in enumerate(prompts.tolist()):
        scored = [(logp / len(seq) ** length_penalty, seq) for seq, logp in hypotheses(lm, prompt, n, eos)]
        best_score, best_seq = max(scored)
        got = tokens[row, 1:].tolist()
        if eos is not None and eos in got:
            got = got[:got.index(eos) + 1]  # the rest is eos padding
        assert got == best_seq
        assert float(scores[row]) == pytest.approx(best_score, abs=1e-5)


def test_beam_search_prunes_when_the_beam_is_small():
    """With a beam of 1 the search is greedy, and some prompt of this model has a better hypothesis than greedy's
    (otherwise the exactness test above would not show that the beam matters)."""
    lm, n = ToyLM(4, seed=3), 4
    found_better = False
    for p in range(4):
        prompt = torch.tensor([[p]])
        _, s1 = beam_search(lm, prompt, n, beam_size=1, eos_id=3)
        _, s_all = beam_search(lm, prompt, n, beam_size=4**n, eos_id=3)
        assert float(s_all) >= float(s1) - 1e-6
        found_better |= float(s_all) > float(s1) + 1e-4
    assert found_better


@pytest.mark.parametrize("length_penalty", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("eos", [0, None])
def test_beam_size_one_is_greedy(length_penalty, eos):
    lm = ToyLM(5, seed=2)
    prompts = torch.tensor([[1, 2], [3, 4], [0, 1], [4, 4]])
    beam, _ = beam_search(lm, prompts, 6, beam_size=1, eos_id=eos, length_penalty=length_penalty)
    assert torch.equal(beam, greedy(lm, prompts, 6, eos_id=eos))


def test_beam_scores_are_the_scores_of_the_returned_tokens():
    lm, eos, lp = ToyLM(4, seed=5), 3, 1.0
    prompts = torch.tensor([[0], [1], [2]])
    tokens, scores = beam_search(lm, prompts, 5, beam_size=3, eos_id=eos, length_penalty=lp)
    for row in range(3):
        seq = tokens[row, 1:].tolist()
        seq = seq[:seq.index(eos) + 1] if eos in seq else seq
        logp = sum(float(lm(tokens[row:row + 1, :1 + i]).log_softmax(-1)[0, t]) for i, t in enumerate(seq))
        assert float(scores[row]) == pytest.approx(logp / len(seq) ** lp, abs=1e-5)


class StatefulLM(ToyLM):
    """Keeps its own copy of each row's tokens, as a KV cache would, and follows beam_search's `reorder` calls.

    Its logits come from that state alone, so a missed or wrong reorder changes the result."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.state, self.reorders = None, 0

    def reorder(self, rows):
        self.reorders += 1
        self.state = None if self.state is None else self.state[rows]

    def __call__(self, tokens):
        if self.state is None:
            self.state = tokens.clone()
        else:
            assert torch.equal(self.state, tokens[:, :-1]), "the state does not match the tokens it was given"
            self.state = tokens.clone()
        return super().__call__(self.state)


def test_beam_search_reorders_stateful_logits_fns():
    plain, stateful = ToyLM(4, seed=7), StatefulLM(4, seed=7)
    prompts = torch.tensor([[0, 1], [2, 3]])
    a = beam_search(plain, prompts, 5, beam_size=3, eos_id=1)
    b = beam_search(stateful, prompts, 5, beam_size=3, eos_id=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert stateful.reorders >= 2  # the initial expansion and at least one re-selection


def test_greedy_pads_after_eos_and_stops_early():
    lm = ToyLM(4, seed=0)
    prompts = torch.tensor([[0], [1], [2], [3]])
    out = greedy(lm, prompts, 30, eos_id=2)
    assert out.shape[1] <= 31
    for row in out[:, 1:].tolist():
        if 2 in row:
            assert all(t == 2 for t in row[row.index(2):])
    if out.shape[1] < 31:  # stopped early: every row ended
        assert bool((out == 2).any(dim=1).all())
    # without eos it runs exactly max_new_tokens steps, each the argmax
    out = greedy(lm, prompts, 4)
    assert out.shape == (4, 5)
    for t in range(1, 5):
        assert torch.equal(out[:, t], lm(out[:, :t]).argmax(-1))


def test_next_token_probabilities_by_hand():
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = p.log()
    torch.testing.assert_close(next_token_probabilities(logits), p)
    torch.testing.assert_close(next_token_probabilities(logits, top_k=2), torch.tensor([[0.625, 0.375, 0, 0]]))
    torch.testing.assert_close(next_token_probabilities(logits, top_p=0.75), torch.tensor([[0.625, 0.375, 0, 0]]))
    torch.testing.assert_close(next_token_probabilities(logits, top_p=0.85),
                               torch.tensor([[0.5, 0.3, 0.15, 0]]) / 0.95)
    torch.testing.assert_close(next_token_probabilities(logits, top_p=0.4), torch.tensor([[1.0, 0, 0, 0]]))
    hot = p.sqrt() / p.sqrt().sum()
    torch.testing.assert_close(next_token_probabilities(logits, temperature=2.0), hot)
    both = next_token_probabilities(logits, temperature=2.0, top_k=3, top_p=0.5)  # top-k first, then nucleus
    kept = hot[0, :3] / hot[0, :3].sum()
    n = int((kept.cumsum(0) - kept < 0.5).sum())
    want = torch.zeros(1, 4)
    want[0, :n] = kept[:n] / kept[:n].sum()
    torch.testing.assert_close(both, want)


def test_sample_frequencies_follow_the_distribution():
    lm = ToyLM(6, seed=4)
    prompt = torch.tensor([[2, 5]])
    want = next_token_probabilities(lm(prompt), temperature=1.5, top_k=4)[0]
    draws = sample(lm, prompt.repeat(20000, 1), 1, temperature=1.5, top_k=4,
                   generator=torch.Generator().manual_seed(0))[:, -1]
    freq = torch.bincount(draws, minlength=6).float() / 20000
    assert bool((freq[want == 0] == 0).all())  # nothing outside the top 4
    torch.testing.assert_close(freq, want, atol=0.015, rtol=0)


def test_sample_extremes_and_generator():
    lm = ToyLM(50, seed=6, width=16)
    prompts = torch.tensor([[1], [7], [30]])
    g = greedy(lm, prompts, 8)
    assert torch.equal(sample(lm, prompts, 8, top_k=1, generator=torch.Generator().manual_seed(1)), g)
    assert torch.equal(sample(lm, prompts, 8, top_p=1e-6, generator=torch.Generator().manual_seed(1)), g)
    a = sample(lm, prompts, 8, generator=torch.Generator().manual_seed(3))
    b = sample(lm, prompts, 8, generator=torch.Generator().manual_seed(3))
    c = sample(lm, prompts, 8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    state = torch.get_rng_state()
    sample(lm, prompts, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)  # a generator leaves the global RNG alone


def test_sampled_rows_are_padded_after_eos():
    lm = ToyLM(4, seed=8)
    out = sample(lm, torch.zeros(64, 1, dtype=torch.long), 12, temperature=2.0, eos_id=3,
                 generator=torch.Generator().manual_seed(0))
    ended = 0
    for row in out[:, 1:].tolist():
        if 3 in row:
            ended += 1
            assert all(t == 3 for t in row[row.index(3):])
    assert ended > 0


BAD = [
    (greedy, dict(prompt=torch.zeros(2, 0, dtype=torch.long)), ValueError, "prompt is empty"),
    (greedy, dict(prompt=torch.zeros(0, 3, dtype=torch.long)), ValueError, "prompt is empty"),
    (greedy, dict(prompt=torch.zeros(3, dtype=torch.long)), ValueError, r"\(B, T\)"),
    (greedy, dict(prompt=torch.zeros(1, 2)), TypeError, "integer token ids"),
    (greedy, dict(prompt=[[0, 1]]), TypeError, "prompt must be a torch.Tensor"),
    (greedy, dict(prompt=torch.tensor([[0, -1]])), ValueError, "negative token id -1"),
    (greedy, dict(max_new_tokens=0), ValueError, "max_new_tokens must be a positive integer, got 0"),
    (greedy, dict(max_new_tokens=2.0), TypeError, "max_new_tokens"),
    (greedy, dict(eos_id=-1), ValueError, "eos_id"),
    (greedy, dict(eos_id=9), ValueError, "eos_id 9 is not a token of the vocabulary of size 3"),
    (greedy, dict(logits_fn="model"), TypeError, "logits_fn must be callable"),
    (greedy, dict(logits_fn=lambda t: torch.zeros(t.shape[0], t.shape[1], 3)), ValueError, r"\(B, V\)"),
    (greedy, dict(logits_fn=lambda t: torch.zeros(1, 3)), ValueError, r"\(B, V\) = \(2, V\)"),
    (greedy, dict(logits_fn=lambda t: torch.zeros(t.shape[0], 3, dtype=torch.long)), TypeError, "floating"),
    (beam_search, dict(beam_size=0), ValueError, "beam_size must be a positive integer, got 0"),
    (beam_search, dict(beam_size=None), TypeError, "beam_size"),
    (beam_search, dict(beam_size=2, length_penalty=float("nan")), ValueError, "length_penalty"),
    (beam_search, dict(beam_size=2, max_new_tokens=0), ValueError, "max_new_tokens"),
    (sample, dict(temperature=0.0), ValueError, r"temperature must be a finite number > 0, got 0.0"),
    (sample, dict(temperature=-1.0), ValueError, "temperature"),
    (sample, dict(top_k=0), ValueError, "top_k must be a positive integer, got 0"),
    (sample, dict(top_p=0.0), ValueError, r"top_p must be a finite number in \(0, 1\], got 0.0"),
    (sample, dict(top_p=1.5), ValueError, "top_p"),
    (sample, dict(generator=0), TypeError, "generator must be a torch.Generator"),
]


@pytest.mark.parametrize("fn, changes, error, message", BAD, ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_bad_input(fn, changes, error, message):
    args = dict(logits_fn=ToyLM(3), prompt=torch.tensor([[0], [1]]), max_new_tokens=3)
    if fn is beam_search:
        args["beam_size"] = 2
    args.update(changes)
    with pytest.raises(error, match=message):
        fn(**args)


def test_next_token_probabilities_bad_input():
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        next_token_probabilities(torch.zeros(3))
    with pytest.raises(TypeError, match="floating"):
        next_token_probabilities(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="top_p"):
        next_token_probabilities(torch.zeros(1, 3), top_p=-0.1)
    assert math.isclose(float(next_token_probabilities(torch.zeros(1, 4), top_k=10).sum()), 1.0, rel_tol=1e-6)
