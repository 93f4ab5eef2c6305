"""Every metric of the pipeline, batched and vectorized, with its direction (reference: training.md §4).

Each function is pure: a model and tensors in, numbers out, no I/O. Definitions follow the paper
with our documented departures: real tokens only in losses and accuracy (Q7), perplexity as
exp(token-weighted mean NLL) (Q13), no EOS suppression and PAD-aware window comparison (Q14), greedy
decoding with a KV cache that stops at ``prompt_len + k`` (Q16).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from tinymem.data.core import MemSet, TinyMemData

# Direction of each registered metric; best-run selection and tables read it here (lm-eval style).
HIGHER_IS_BETTER: dict[str, bool] = {
    "percent_mem": False,  # share of artifact rows reproduced: the thing mitigations lower
    "acc": True,  # real-token next-token accuracy on clean test rows (math)
    "perplexity": False,  # exp(mean NLL) on the clean test split (language)
    "memorization_score": False,  # Biderman et al.: mean fraction of continuation tokens reproduced
}


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model.eval()`` + ``torch.inference_mode()``, restoring the training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def trim(rows: Tensor, pad_id: int) -> Tensor:
    """Drop trailing columns that are PAD in every row (exact when PAD is masked in the loss)."""
    real = (rows != pad_id).any(0)
    if not bool(real.any()):
        return rows[:, :1]
    last = int(torch.nonzero(real).max()) + 1
    return rows[:, :last]


def lm_targets(rows: Tensor, pad_id: int, pad_in_loss: bool = False) -> Tensor:
    """Next-token targets ``rows[:, 1:]`` with PAD set to −100 unless ``pad_in_loss`` (Q7)."""
    targets = rows[:, 1:].clone()
    if not pad_in_loss:
        targets[targets == pad_id] = -100
    return targets


def per_row_loss(logits: Tensor, rows: Tensor, pad_id: int, pad_in_loss: bool = False) -> Tensor:
    """``[B]`` mean next-token cross-entropy per row over its real target tokens.

    ``logits`` is ``[B, T, V]`` for ``rows`` ``[B, T]``. Rows without a real target get loss 0.
    """
    targets = lm_targets(rows, pad_id, pad_in_loss)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100, reduction="none")
    count = (targets != -100).sum(1)
    return nll.sum(1) / count.clamp(min=1)


def lm_loss(logits: Tensor, rows: Tensor, pad_id: int, pad_in_loss: bool = False) -> Tensor:
    """Token-mean next-token cross-entropy over the batch's real target tokens (the training loss)."""
    targets = lm_targets(rows, pad_id, pad_in_loss)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100)


def greedy_continue(model: torch.nn.Module, prompts: Tensor, k: int) -> Tensor:
    """``[B, k]`` greedy continuation of equal-length prompts ``[B, P]``, with a KV cache.

    No EOS suppression (Q14): decoding runs exactly ``k`` steps whatever the model emits.
    """
    # transformers >= 5.2x names the KV cache `cache` (`past_key_values` is deprecated); older
    # releases only know `past_key_values`.
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=prompts, use_cache=True)
    nxt = out.logits[:, -1].argmax(-1)
    generated = [nxt]
    for _ in range(k - 1):
        out = model(input_ids=nxt[:, None], use_cache=True, **{cache_kw: getattr(out, cache_kw)})
        nxt = out.logits[:, -1].argmax(-1)
        generated.append(nxt)
    return torch.stack(generated, 1)


def generate_windows(model: torch.nn.Module, memset: MemSet, k: int, batch_size: int = 256) -> Tensor:
    """``[M, k]`` greedy tokens at positions ``[p_i, p_i + k)`` after each row's clean prompt.

    Rows are grouped by prompt length so every batch is rectangular; windows are cut at the row
    width (positions past it are −1).
    """
    m, width = memset.rows.shape
    out = torch.full((m, k), -1, dtype=torch.long)
    dev = _device(model)
    with eval_mode(model):
        for p in torch.unique(memset.prompt_len).tolist():
            idx = torch.nonzero(memset.prompt_len == p).squeeze(1)
            steps = min(k, width - p)
            if steps <= 0:
                continue
            for start in range(0, len(idx), batch_size):
                b = idx[start : start + batch_size]
                prompts = memset.clean[b, :p].to(dev)
                out[b, :steps] = greedy_continue(model, prompts, steps).cpu()
    return out


@dataclass
class MemorizationResult:
    """Per-row outcome of the memorization check (Q6: the denominator is kept explicit)."""

    counted: Tensor  # [M] bool: row enters the denominator
    memorized: Tensor  # [M] bool: compared window reproduced exactly
    clean_match: Tensor  # [M] bool: window equals the clean continuation instead
    score: Tensor  # [M] float: fraction of compared tokens reproduced (Biderman et al. 2023)
    group: Tensor  # [M] duplication group

    @property
    def n_counted(self) -> int:
        return int(self.counted.sum())

    @property
    def percent_mem(self) -> float:
        """Percent (0–100) of counted rows memorized; 0 when no row counts."""
        n = self.n_counted
        return 100.0 * float((self.memorized & self.counted).sum()) / n if n else 0.0

    @property
    def percent_non_mem(self) -> float:
        n = self.n_counted
        return 100.0 * float((self.clean_match & self.counted).sum()) / n if n else 0.0

    @property
    def memorization_score(self) -> float:
        n = self.n_counted
        return float(self.score[self.counted].mean()) if n else 0.0

    def by_group(self) -> dict[int, float]:
        """Percent memorized per duplication group."""
        out: dict[int, float] = {}
        for g in torch.unique(self.group).tolist():
            sel = self.counted & (self.group == g)
            n = int(sel.sum())
            out[int(g)] = 100.0 * float((self.memorized & sel).sum()) / n if n else 0.0
        return out


def memorization(
    model: torch.nn.Module, memset: MemSet, k: int, pad_id: int, artifact: str, batch_size: int = 256
) -> MemorizationResult:
    """Memorization of artifact rows (training.md §4.1–4.2, with Q14).

    Prompt: the clean row up to ``prompt_len`` (50 tokens for noise; through the trigger for
    backdoors). The model's greedy tokens at ``[prompt_len, prompt_len + k)`` are compared with the
    artifact row there, on the artifact row's non-PAD positions only (EOS included).
    Rows counted: for noise, rows whose artifact and clean versions differ inside the window
    (upstream's denominator, Q6); for backdoors, every row with a compared position.
    """
    gen = generate_windows(model, memset, k, batch_size)
    m, width = memset.rows.shape
    pos = memset.prompt_len[:, None] + torch.arange(k)[None, :]  # [M, k]
    inside = pos < width
    safe = pos.clamp(max=width - 1)
    target = memset.rows.gather(1, safe)
    clean = memset.clean.gather(1, safe)
    compared = inside & (target != pad_id)
    hit = (gen == target) | ~compared
    memorized = hit.all(1) & compared.any(1)
    clean_match = ((gen == clean) | ~compared).all(1) & compared.any(1)
    n_cmp = compared.sum(1)
    score = ((gen == target) & compared).sum(1).float() / n_cmp.clamp(min=1)
    if artifact == "noise":
        counted = ((target != clean) & compared).any(1)
    else:
        counted = compared.any(1)
    return MemorizationResult(counted, memorized, clean_match, score, memset.group.clone())


def _batches(rows: Tensor, batch_size: int) -> Iterator[Tensor]:
    for start in range(0, len(rows), batch_size):
        yield rows[start : start + batch_size]


def accuracy(model: torch.nn.Module, rows: Tensor, pad_id: int, batch_size: int = 512) -> float:
    """Real-token next-token accuracy (0–1): the share of non-PAD targets that the greedy
    (argmax) prediction from the true prefix gets right. Upstream also counts PAD targets (Q7)."""
    dev, correct, total = _device(model), 0, 0
    with eval_mode(model):
        for b in _batches(rows, batch_size):
            b = trim(b, pad_id).to(dev)
            pred = model(input_ids=b).logits[:, :-1].argmax(-1)
            tgt = b[:, 1:]
            real = tgt != pad_id
            correct += int(((pred == tgt) & real).sum())
            total += int(real.sum())
    return correct / total if total else 0.0


def perplexity(model: torch.nn.Module, rows: Tensor, pad_id: int, batch_size: int = 64) -> dict[str, float]:
    """Perplexity of clean rows.

    Returns ``perplexity`` = exp(token-weighted mean NLL over real targets) (Q13; a uniform model
    gives the vocabulary size) and ``perplexity_upstream`` = mean over fixed-size batches of
    exp(batch mean CE over all positions), upstream's definition, kept for comparison.
    """
    dev = _device(model)
    nll_sum, n_tok, upstream = 0.0, 0, []
    with eval_mode(model):
        for b in _batches(rows, batch_size):
            b = b.to(dev)
            logits = model(input_ids=b).logits
            targets = lm_targets(b, pad_id)
            nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100, reduction="sum")
            nll_sum += float(nll)
            n_tok += int((targets != -100).sum())
            upstream.append(math.exp(float(lm_loss(logits, b, pad_id, pad_in_loss=True))))
    return {
        "perplexity": math.exp(nll_sum / n_tok) if n_tok else float("nan"),
        "perplexity_upstream": sum(upstream) / len(upstream) if upstream else float("nan"),
    }


def evaluate(model: torch.nn.Module, data: TinyMemData, batch_size: int = 256) -> dict[str, float]:
    """All metrics of one model on one data set, as a flat dict of registered names.

    Keys: ``percent_mem``, ``percent_non_mem``, ``memorization_score``, ``n_mem_counted``,
    ``percent_mem_group{g}`` per duplication group; math: ``acc_{test}`` per test set and their
    mean ``acc``; language: ``perplexity`` and ``perplexity_upstream`` on the test split.
    """
    res = memorization(model, data.artifact_eval, data.k, data.tokens.pad_id, data.artifact, batch_size)
    out: dict[str, float] = {
        "percent_mem": res.percent_mem,
        "percent_non_mem": res.percent_non_mem,
        "memorization_score": res.memorization_score,
        "n_mem_counted": float(res.n_counted),
    }
    groups = res.by_group()
    if len(groups) > 1:
        out.update({f"percent_mem_group{g}": v for g, v in groups.items()})
    if data.kind == "math":
        accs = {name: accuracy(model, rows, data.tokens.pad_id, batch_size) for name, rows in data.tests.items()}
        out.update({f"acc_{name}": v for name, v in accs.items()})
        out["acc"] = sum(accs.values()) / len(accs)
    else:
        out.update(perplexity(model, data.tests["test"], data.tokens.pad_id, batch_size=min(batch_size, 64)))
    return out


def memorized_rows(model: torch.nn.Module, data: TinyMemData, batch_size: int = 256) -> Tensor:
    """Indices into ``data.artifact_train`` of the rows the model reproduces: the forget set."""
    res = memorization(model, data.artifact_train, data.k, data.tokens.pad_id, data.artifact, batch_size)
    return torch.nonzero(res.memorized & res.counted).squeeze(1)


def selection_score(before: dict[str, float], after: dict[str, float], kind: str) -> float:
    """Best-run score of one unlearning run (reference U11); lower is better.

    Math: Δmem_rel − mean over test distributions of Δacc_rel; language: Δmem_rel + Δppl_rel;
    each relative to the unedited model. +100 when memorization did not change, as upstream.
    """
    mb, ma = before["percent_mem"], after["percent_mem"]
    d_mem = (ma - mb) / mb if mb else 0.0
    penalty = 100.0 if ma == mb else 0.0
    if kind == "math":
        names = [k for k in before if k.startswith("acc_")]
        d_acc = sum((after[n] - before[n]) / before[n] for n in names if before[n]) / max(len(names), 1)
        return d_mem - d_acc + penalty
    d_ppl = (after["perplexity"] - before["perplexity"]) / before["perplexity"]
    return d_mem + d_ppl + penalty
