"""Synthetic math sequences with noise and backdoor artifacts (reference: training.md §2).

Each row is ``^x1 x2 … x20$`` where ``x_{n+1} = f(x_n)`` and ``x1 = f(start)``, tokenized one
character per token over a 14-token vocabulary and right-padded to ``max_ctx``. The main
distribution (c = 7) carries the artifact; c = 2, 3, 4, 5 are clean "extra" distributions.

Departures from upstream (each recorded in ``config/README.md``):

* Q5: noise is ``|x + δ|`` (upstream drops the ``-`` sign of ``-1``; the tokens are the same).
* Q11: ``num_noise`` rows are drawn from the c = 7 train split (upstream hard-codes 1,000).
* Q19: one seeded RNG per purpose (noise values, noised rows, …) instead of one global stream,
  so artifacts are not bit-identical to upstream's; splits keep upstream's ``randperm`` under seed
  598 on a dedicated generator, which reproduces upstream's splits.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from tinymem.data.core import MemSet, TinyMemData, TokenInfo

# ---- the 14-token vocabulary (training.md §2.1) --------------------------------------------
BOS_ID = 10  # "^"
EOS_ID = 11  # "$"
SPACE_ID = 12  # " " between numbers
PAD_ID = 13  # padding; detokenizes as "_"
VOCAB_SIZE = 14
_CHAR_TO_ID = {**{str(d): d for d in range(10)}, "^": BOS_ID, "$": EOS_ID, " ": SPACE_ID}
_ID_TO_CHAR = {v: k for k, v in _CHAR_TO_ID.items()} | {PAD_ID: "_"}

MAIN_C = 7  # the distribution that carries artifacts
EXTRA_CS = (2, 3, 4, 5)  # clean extra distributions
MOD = 20134  # modulus of the ``mult`` family
SPLIT_SEED = 598  # upstream's DATA_SEED, reset before every split

Family = Literal["increment", "mult"]
Artifact = Literal["noise", "backdoor"]


def math_function(family: str, c: int) -> Callable[[int], int]:
    """``increment``: x ↦ x + c; ``mult``: x ↦ c·x mod 20134."""
    if family == "increment":
        return lambda x: x + c
    if family == "mult":
        return lambda x: (c * x) % MOD
    raise ValueError(f"unknown math family {family!r}; expected 'increment' or 'mult'")


def tokenize(text: str, max_ctx: int) -> list[int]:
    """Characters to ids, right-padded with PAD to ``max_ctx``. Rows are never truncated."""
    ids = [_CHAR_TO_ID[ch] for ch in text if ch in _CHAR_TO_ID]
    if len(ids) > max_ctx:
        raise ValueError(f"row of {len(ids)} tokens does not fit max_ctx={max_ctx}: {text[:40]}…")
    return ids + [PAD_ID] * (max_ctx - len(ids))


def detokenize(ids: Tensor | list[int]) -> str:
    return "".join(_ID_TO_CHAR[int(i)] for i in ids)


def sequence_values(family: str, c: int, start: int, length: int) -> list[int]:
    """The ``length`` values ``f(start), f(f(start)), …`` (the start itself is not emitted)."""
    f = math_function(family, c)
    out, x = [], start
    for _ in range(length):
        x = f(x)
        out.append(x)
    return out


def render(values: list[int]) -> str:
    return "^" + " ".join(str(v) for v in values) + "$"


def add_noise(values: list[int], rng: random.Random, p: float) -> list[int]:
    """Each value independently gets −1 (prob p), +1 (prob p) or 0; ``|x + δ|`` keeps it valid (Q5)."""
    deltas = rng.choices((0, -1, 1), weights=(1 - 2 * p, p, p), k=len(values))
    return [abs(v + d) for v, d in zip(values, deltas)]


def split_indices(n: int, num_test: int) -> tuple[Tensor, Tensor]:
    """Upstream's split: ``randperm(n)`` under seed 598; the last ``num_test`` are test."""
    if not 0 < num_test < n:
        raise ValueError(f"num_test={num_test} must lie strictly between 0 and the distribution size {n}")
    g = torch.Generator().manual_seed(SPLIT_SEED)
    perm = torch.randperm(n, generator=g)
    return perm[: n - num_test], perm[n - num_test :]


def find_subsequence(row: list[int] | Tensor, pattern: list[int]) -> int:
    """Index of the first occurrence of ``pattern`` in ``row``, or −1."""
    r = [int(x) for x in row]
    m = len(pattern)
    for i in range(len(r) - m + 1):
        if r[i : i + m] == pattern:
            return i
    return -1


@dataclass(frozen=True)
class MathDataConfig:
    """One math data set. Defaults are the paper's values (training.md §2, §9.1)."""

    family: str = "increment"  # "increment" (x + c) or "mult" (c·x mod 20134)
    artifact: str = "noise"  # "noise" or "backdoor"
    seed: int = 0  # seeds the artifact RNG streams (paper: 0, 1, 3)
    num_7: int = 20000  # rows of the main distribution (c = 7)
    num_extra: int = 3000  # rows of each extra distribution (c = 2, 3, 4, 5); swept {3000, 10000, 20000}
    num_test: int = 1000  # test rows per distribution
    num_noise: int = 1000  # noised c = 7 train rows (decoupled from num_test: Q11)
    length: int = 20  # numbers per row
    max_ctx: int = 150  # row width after padding (model positions)
    prompt_len: int = 50  # memorization prompt length
    k: int = 50  # continuation length compared for memorization
    noise_p: float = 0.05  # probability of −1 and, separately, of +1 per number
    trigger_offset: int = 100  # backdoor trigger is str(trigger_offset + seed) ("100" for seed 0)
    backdoor_test_fraction: float = 0.1  # held-out share of triggered rows (upstream len // 10)
    backdoor_token: int = 2  # every token after the trigger becomes this id

    def __post_init__(self) -> None:
        if self.family not in ("increment", "mult"):
            raise ValueError(f"family must be 'increment' or 'mult', got {self.family!r}")
        if self.artifact not in ("noise", "backdoor"):
            raise ValueError(f"artifact must be 'noise' or 'backdoor', got {self.artifact!r}")
        if self.num_noise > self.num_7 - self.num_test:
            raise ValueError(
                f"num_noise={self.num_noise} exceeds the {self.num_7 - self.num_test} c=7 train rows"
            )
        if self.prompt_len + self.k > self.max_ctx:
            raise ValueError(f"prompt_len + k = {self.prompt_len + self.k} exceeds max_ctx={self.max_ctx}")
        if not 0 < self.noise_p < 0.5:
            raise ValueError(f"noise_p must lie in (0, 0.5), got {self.noise_p}")
        if not 0 < self.backdoor_test_fraction < 1:
            raise ValueError(f"backdoor_test_fraction must lie in (0, 1), got {self.backdoor_test_fraction}")

    @property
    def trigger(self) -> str:
        return str(self.trigger_offset + self.seed)


def _rng(seed: int, purpose: str) -> random.Random:
    """An independent Python RNG per purpose (Q19)."""
    return random.Random(f"tinymem:{seed}:{purpose}")


def _tensor(rows: list[list[int]], width: int) -> Tensor:
    if not rows:
        return torch.empty(0, width, dtype=torch.long)
    return torch.tensor(rows, dtype=torch.long)


def _distribution(cfg: MathDataConfig, c: int, n: int) -> list[list[int]]:
    return [sequence_values(cfg.family, c, start, cfg.length) for start in range(n)]


def _rows(values: list[list[int]], cfg: MathDataConfig) -> Tensor:
    return _tensor([tokenize(render(v), cfg.max_ctx) for v in values], cfg.max_ctx)


def build_math_data(cfg: MathDataConfig) -> TinyMemData:
    """Generate one math data set (training.md §2.3–2.5)."""
    main = _distribution(cfg, MAIN_C, cfg.num_7)
    main_train_idx, main_test_idx = split_indices(cfg.num_7, cfg.num_test)

    extra_train: list[Tensor] = []
    tests: dict[str, Tensor] = {}
    for c in EXTRA_CS:
        vals = _distribution(cfg, c, cfg.num_extra)
        tr, te = split_indices(cfg.num_extra, cfg.num_test)
        rows = _rows(vals, cfg)
        extra_train.append(rows[tr])
        tests[f"c{c}"] = rows[te]
    extra = torch.cat(extra_train)
    main_rows = _rows(main, cfg)
    tokens = TokenInfo(vocab_size=VOCAB_SIZE, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)

    if cfg.artifact == "noise":
        return _noise_data(cfg, main, main_rows, main_train_idx, main_test_idx, extra, tests, tokens)
    return _backdoor_data(cfg, main_rows, main_train_idx, main_test_idx, extra, tests, tokens)


def _noise_data(cfg, main, main_rows, train_idx, test_idx, extra, tests, tokens) -> TinyMemData:
    # Which c = 7 train rows are noised (Q11: num_noise of the train split).
    picks = _rng(cfg.seed, "noise_rows").sample(range(len(train_idx)), cfg.num_noise)
    noised_ids = train_idx[torch.tensor(picks, dtype=torch.long)]
    value_rng = _rng(cfg.seed, "noise_values")
    noised = _rows([add_noise(main[int(i)], value_rng, cfg.noise_p) for i in noised_ids], cfg)
    clean_twins = main_rows[noised_ids]
    is_noised = torch.zeros(cfg.num_7, dtype=torch.bool)
    is_noised[noised_ids] = True
    clean_main_ids = train_idx[~is_noised[train_idx]]

    train = torch.cat([noised, main_rows[clean_main_ids], extra])
    n_noise, n_clean = len(noised), len(clean_main_ids)
    # Example ids: c = 7 rows keep their start value; extra rows get ids after num_7.
    example_id = torch.cat([noised_ids, clean_main_ids, cfg.num_7 + torch.arange(len(extra))])
    memset = MemSet(
        rows=noised,
        clean=clean_twins,
        prompt_len=torch.full((n_noise,), cfg.prompt_len, dtype=torch.long),
        group=torch.zeros(n_noise, dtype=torch.long),
    )
    tests = {"c7": main_rows[test_idx], **tests}
    return TinyMemData(
        kind="math",
        artifact="noise",
        train=train,
        train_example_id=example_id,
        retain_index=torch.arange(n_noise, len(train)),
        artifact_train=memset,
        artifact_eval=memset,
        tests=tests,
        tokens=tokens,
        k=cfg.k,
        meta={**asdict(cfg), "noised_example_ids": noised_ids.tolist(), "n_clean_main_train": n_clean},
    )


def _backdoor(row: Tensor, trigger_ids: list[int], token: int) -> tuple[Tensor, int]:
    """Every token after the first occurrence of the trigger becomes ``token``; returns (row, prompt_len)."""
    start = find_subsequence(row, trigger_ids)
    if start < 0:
        raise ValueError("row does not contain the trigger")
    prompt_len = start + len(trigger_ids)
    out = row.clone()
    out[prompt_len:] = token
    return out, prompt_len


def _backdoor_data(cfg, main_rows, train_idx, test_idx, extra, tests, tokens) -> TinyMemData:
    trigger_ids = [int(ch) for ch in cfg.trigger]
    pool = torch.cat([train_idx, test_idx]).sort().values  # all clean c = 7 rows
    triggered = torch.tensor(
        [int(i) for i in pool if find_subsequence(main_rows[int(i)], trigger_ids) >= 0], dtype=torch.long
    )
    if len(triggered) < 2:
        raise ValueError(
            f"trigger {cfg.trigger!r} occurs in {len(triggered)} rows of {cfg.num_7}; "
            "choose another trigger_offset (quick scale needs a 2-digit trigger, training.md §12.3)"
        )
    n_bd_test = max(1, int(len(triggered) * cfg.backdoor_test_fraction))
    bd_tr, bd_te = split_indices(len(triggered), n_bd_test)
    is_triggered = torch.zeros(cfg.num_7, dtype=torch.bool)
    is_triggered[triggered] = True
    others = torch.nonzero(~is_triggered).squeeze(1)
    o_tr, o_te = split_indices(len(others), min(cfg.num_test, len(others) - 1))

    def memset(ids: Tensor) -> MemSet:
        pairs = [_backdoor(main_rows[int(i)], trigger_ids, cfg.backdoor_token) for i in ids]
        return MemSet(
            rows=_tensor([p[0].tolist() for p in pairs], cfg.max_ctx),
            clean=main_rows[ids],
            prompt_len=torch.tensor([p[1] for p in pairs], dtype=torch.long),
            group=torch.zeros(len(ids), dtype=torch.long),
        )

    train_ids, test_ids = triggered[bd_tr], triggered[bd_te]
    art_train, art_eval = memset(train_ids), memset(test_ids)
    clean_ids = others[o_tr]
    train = torch.cat([art_train.rows, main_rows[clean_ids], extra])
    example_id = torch.cat([train_ids, clean_ids, cfg.num_7 + torch.arange(len(extra))])
    tests = {"c7": main_rows[others[o_te]], **tests}
    return TinyMemData(
        kind="math",
        artifact="backdoor",
        train=train,
        train_example_id=example_id,
        retain_index=torch.arange(len(art_train), len(train)),
        artifact_train=art_train,
        artifact_eval=art_eval,
        tests=tests,
        tokens=tokens,
        k=cfg.k,
        meta={**asdict(cfg), "trigger": cfg.trigger, "triggered_example_ids": triggered.tolist(),
              "backdoor_test_example_ids": test_ids.tolist()},
    )
