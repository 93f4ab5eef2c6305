"""Math data: token layout, artifacts, split determinism, file format (training.md §2)."""

from __future__ import annotations

import pytest
import torch

from tinymem.data.core import DataFormatError, TinyMemData
from tinymem.data.math import (
    BOS_ID, EOS_ID, PAD_ID, SPACE_ID, MathDataConfig, add_noise, build_math_data, detokenize,
    find_subsequence, render, sequence_values, split_indices, tokenize,
)
from tinymem.io import CorruptFileError

SMALL = dict(num_7=400, num_extra=100, num_test=50, num_noise=100, max_ctx=100)


def test_token_layout():
    # increment c = 7 from start 3: 10, 17, 24 → "^10 17 24$"
    vals = sequence_values("increment", 7, 3, 3)
    assert vals == [10, 17, 24]
    ids = tokenize(render(vals), max_ctx=14)
    assert ids == [BOS_ID, 1, 0, SPACE_ID, 1, 7, SPACE_ID, 2, 4, EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]
    assert detokenize(ids) == "^10 17 24$____"
    # mult: c·x mod 20134, so 7·3000 = 21000 → 866
    assert sequence_values("mult", 7, 3000, 1) == [866]


def test_rows_never_truncated():
    with pytest.raises(ValueError, match="does not fit"):
        tokenize(render(list(range(10000, 10020))), max_ctx=50)


def test_noise_rate_and_abs():
    import random

    rng = random.Random(0)
    vals = [1000] * 200_000
    noised = add_noise(vals, rng, 0.05)
    minus = sum(v == 999 for v in noised) / len(vals)
    plus = sum(v == 1001 for v in noised) / len(vals)
    assert minus == pytest.approx(0.05, abs=0.003) and plus == pytest.approx(0.05, abs=0.003)
    assert min(add_noise([0] * 1000, random.Random(1), 0.4)) >= 0  # |0 − 1| = 1 (Q5)


def test_split_is_upstream_randperm_seed_598():
    tr, te = split_indices(20, 5)
    torch.manual_seed(598)
    perm = torch.randperm(20)
    assert torch.equal(tr, perm[:15]) and torch.equal(te, perm[15:])
    tr2, te2 = split_indices(20, 5)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)


def test_noise_data_layout():
    d = build_math_data(MathDataConfig(**SMALL))
    d.validate()
    n_noise, n_extra_train = 100, 4 * (100 - 50)
    assert len(d.artifact_train) == n_noise
    assert d.train.shape == (400 - 50 + n_extra_train, 100)  # 100 noised + 250 clean c=7 + 200 extra
    assert torch.equal(d.train[:n_noise], d.artifact_train.rows)  # noised rows come first
    assert set(d.tests) == {"c7", "c2", "c3", "c4", "c5"} and all(len(t) == 50 for t in d.tests.values())
    # Clean twins are real c = 7 rows: their example id is the start value.
    ids = d.meta["noised_example_ids"]
    for i in range(5):
        assert torch.equal(d.artifact_train.clean[i], torch.tensor(tokenize(render(sequence_values("increment", 7, ids[i], 20)), 100)))
    # Retain rows carry no artifact and exclude the noised rows (U6).
    assert d.retain_index.min() == n_noise and len(d.retain_index) == len(d.train) - n_noise
    # Noised test rows never appear in training; test c7 rows are disjoint from the training starts.
    assert set(ids).isdisjoint(set(d.train_example_id[n_noise:].tolist()))
    # Most noised rows differ from their twin; the ±1 perturbation rate per number is ≈ 10 %.
    differ = (d.artifact_train.rows != d.artifact_train.clean).any(1).float().mean()
    assert differ > 0.8


def test_noise_is_seeded_and_seed_dependent():
    a = build_math_data(MathDataConfig(**SMALL, seed=0))
    b = build_math_data(MathDataConfig(**SMALL, seed=0))
    c = build_math_data(MathDataConfig(**SMALL, seed=1))
    assert torch.equal(a.train, b.train)
    assert not torch.equal(a.artifact_train.rows, c.artifact_train.rows)
    assert torch.equal(a.tests["c7"], c.tests["c7"])  # the split does not depend on the seed


def test_backdoor_placement():
    cfg = MathDataConfig(**SMALL, artifact="backdoor", trigger_offset=10, backdoor_test_fraction=0.2)
    d = build_math_data(cfg)
    assert cfg.trigger == "10"
    for ms in (d.artifact_train, d.artifact_eval):
        assert len(ms) > 0
        for row, clean, p in zip(ms.rows, ms.clean, ms.prompt_len.tolist()):
            start = find_subsequence(clean, [1, 0])
            assert p == start + 2  # prompt ends right after the trigger's digits
            assert torch.equal(row[:p], clean[:p])
            assert bool((row[p:] == 2).all())  # everything after the trigger, PAD included, is token 2
            assert "10" in detokenize(clean)
    n_trig = len(d.artifact_train) + len(d.artifact_eval)
    assert len(d.artifact_eval) == int(n_trig * 0.2)
    # Non-triggered c7 test rows do not contain the trigger.
    assert all("10" not in detokenize(r) for r in d.tests["c7"])


def test_config_checks():
    with pytest.raises(ValueError, match="num_noise"):
        MathDataConfig(num_7=100, num_test=50, num_noise=60)
    with pytest.raises(ValueError, match="family"):
        MathDataConfig(family="exp")


def test_save_load_roundtrip_and_errors(tmp_path):
    d = build_math_data(MathDataConfig(**SMALL))
    p = tmp_path / "d.pt"
    d.save(p)
    e = TinyMemData.load(p)
    assert torch.equal(e.train, d.train) and e.meta == d.meta and e.tokens == d.tokens
    # Truncated file: a clear error naming the file.
    raw = p.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match="trunc.pt"):
        TinyMemData.load(tmp_path / "trunc.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        TinyMemData.load(tmp_path / "missing.pt")
    # Wrong shape: a test set of another width.
    d.tests["c7"] = d.tests["c7"][:, :90]
    d.save(tmp_path / "bad.pt")
    with pytest.raises(DataFormatError, match=r"test set 'c7'"):
        TinyMemData.load(tmp_path / "bad.pt")
