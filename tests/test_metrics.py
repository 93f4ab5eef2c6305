"""Metrics on hand-made models whose answers are known (style: assert real values)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tinymem.data.core import MemSet
from tinymem.metrics import (
    accuracy, generate_windows, greedy_continue, memorization, per_row_loss, selection_score,
)
from tinymem.models import ModelConfig, build_model

V, PAD = 14, 13


class Oracle(nn.Module):
    """Predicts, for each batch row, the next token of whichever stored row shares its first
    ``key_len`` tokens. Its "KV cache" is simply the token history, so it runs through the same
    cached decoding path as a GPT-2."""

    def __init__(self, rows: torch.Tensor, key_len: int) -> None:
        super().__init__()
        self.rows, self.key_len = rows, key_len
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, past_key_values=None, use_cache=False):
        hist = input_ids if past_key_values is None else torch.cat([past_key_values, input_ids], 1)
        logits = torch.full((*input_ids.shape, V), -1e4)
        start = hist.shape[1] - input_ids.shape[1]
        for b in range(hist.shape[0]):
            match = (self.rows[:, : self.key_len] == hist[b, : self.key_len]).all(1).nonzero()
            row = self.rows[int(match[0])] if len(match) else torch.full((self.rows.shape[1],), 12)
            for j in range(input_ids.shape[1]):
                pos = start + j + 1
                logits[b, j, int(row[pos]) if pos < len(row) else 12] = 0.0
        return SimpleNamespace(logits=logits, past_key_values=hist)


def _rows():
    # Three rows of width 12; the "noised" rows differ from clean inside the window [4, 8).
    clean = torch.tensor([
        [10, 1, 2, 12, 3, 4, 12, 5, 6, 11, PAD, PAD],
        [10, 2, 3, 12, 4, 5, 12, 6, 7, 11, PAD, PAD],
        [10, 3, 4, 12, 5, 6, 12, 7, 11, PAD, PAD, PAD],
    ])
    noised = clean.clone()
    noised[0, 4] = 9  # noise in the window
    noised[1, 9] = PAD  # no noise in the window: not counted
    noised[2, 5] = 0  # noise in the window; the row ends (EOS at 8, PAD after) inside it
    return clean, noised


def _memset(clean, noised, p=4):
    n = len(clean)
    return MemSet(noised, clean, torch.full((n,), p), torch.zeros(n, dtype=torch.long))


def test_model_that_knows_noised_rows_memorizes_all_counted():
    clean, noised = _rows()
    res = memorization(Oracle(noised, key_len=4), _memset(clean, noised), k=4, pad_id=PAD, artifact="noise")
    # Rows 0 and 2 have noise in [4, 8); row 1 does not → denominator 2, both reproduced = 100 %.
    assert res.counted.tolist() == [True, False, True]
    assert res.percent_mem == 100.0 and res.percent_non_mem == 0.0
    assert res.memorization_score == 1.0


def test_model_that_knows_clean_rows_memorizes_nothing():
    clean, noised = _rows()
    res = memorization(Oracle(clean, key_len=4), _memset(clean, noised), k=4, pad_id=PAD, artifact="noise")
    assert res.percent_mem == 0.0 and res.percent_non_mem == 100.0
    # Row 0: the window [4, 8) = (3→9, 4, 12, 5): 3 of 4 tokens match → 0.75; row 2: (5, 6→0, 12, 7): 0.75.
    assert res.score[[0, 2]].tolist() == [0.75, 0.75]
    assert res.memorization_score == pytest.approx(0.75)


def test_pad_positions_are_not_compared_q14():
    # Window past the EOS of row 2: only its non-PAD targets count, so a model emitting anything
    # after EOS still memorizes it.
    clean, noised = _rows()
    ms = _memset(clean, noised, p=6)
    res = memorization(Oracle(noised, key_len=4), ms, k=6, pad_id=PAD, artifact="backdoor")
    assert res.memorized.all() and res.counted.all()


def test_windows_cut_at_row_width_and_grouped_prompts():
    clean, noised = _rows()
    ms = MemSet(noised, clean, torch.tensor([4, 10, 9]), torch.zeros(3, dtype=torch.long))
    gen = generate_windows(Oracle(noised, key_len=4), ms, k=4)
    assert gen[1].tolist() == [PAD, PAD, -1, -1]  # positions 10, 11, then past the width
    assert gen[0].tolist() == noised[0, 4:8].tolist()


def test_kv_cache_decoding_equals_full_recompute():
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_embd=32, n_positions=40), seed=0).eval()
    prompts = torch.randint(0, 13, (5, 10))
    with torch.inference_mode():
        cached = greedy_continue(model, prompts, 12)
        seq = prompts
        for _ in range(12):
            nxt = model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1)
            seq = torch.cat([seq, nxt[:, None]], 1)
    assert torch.equal(cached, seq[:, 10:])


def test_accuracy_counts_real_targets_only():
    clean, _ = _rows()
    assert accuracy(Oracle(clean, key_len=2), clean, PAD) == 1.0

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, **_):
            logits = torch.full((*input_ids.shape, V), -1e4)
            logits[..., 12] = 0.0  # always predicts the space token
            return SimpleNamespace(logits=logits)

    # Real targets per row (positions 1..): row 0/1 have 9, row 2 has 8 → 26; spaces among them: 2 each → 6/26.
    assert accuracy(Constant(), clean, PAD) == pytest.approx(6 / 26)


def test_per_row_loss_ignores_pad():
    rows = torch.tensor([[1, 2, PAD, PAD], [1, 2, 3, 4]])
    logits = torch.zeros(2, 4, V)  # uniform: every real target costs log V
    loss = per_row_loss(logits, rows, PAD)
    assert loss.tolist() == pytest.approx([math.log(V), math.log(V)])


def test_trained_model_memorizes_and_untrained_does_not(tiny_data, tiny_model):
    from tinymem.metrics import evaluate

    trained = evaluate(tiny_model, tiny_data)
    untrained = evaluate(build_model(ModelConfig.for_data(tiny_data.tokens, 100, n_layer=2, n_embd=64), seed=1), tiny_data)
    assert trained["percent_mem"] >= 20.0 and untrained["percent_mem"] == 0.0
    assert trained["acc"] > untrained["acc"] + 0.2


def test_selection_score_arithmetic():
    before = {"percent_mem": 50.0, "acc_c7": 0.9, "acc_c2": 0.8}
    after = {"percent_mem": 10.0, "acc_c7": 0.81, "acc_c2": 0.8}
    # Δmem_rel = (10 − 50)/50 = −0.8; Δacc_rel = mean(−0.1, 0) = −0.05 → −0.8 + 0.05 = −0.75
    assert selection_score(before, after, "math") == pytest.approx(-0.75)
    assert selection_score(before, dict(before), "math") == pytest.approx(100.0)
    lang_b, lang_a = {"percent_mem": 40.0, "perplexity": 100.0}, {"percent_mem": 20.0, "perplexity": 110.0}
    assert selection_score(lang_b, lang_a, "language") == pytest.approx(-0.5 + 0.1)
