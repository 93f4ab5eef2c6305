"""Greedy: zero one MLP weight at a time by a first-order estimate (Maini et al. 2023; Sakarvadia et
al. 2025 app. A.3; reference unlearning.md B.2, upstream ``greedy.py`` → ``greedy``).

Each iteration draws one batch of the shuffled forget (y = +1) ∪ retain (y = −1) stream and takes
the gradient g of

    L = −Σᵢ yᵢ ℓᵢ = Σ_{retain} ℓᵢ − Σ_{forget} ℓᵢ,

ℓᵢ the per-row token-mean cross-entropy over real tokens (Q7). Zeroing entry w changes L by about
−w·g, so every MLP entry (weights and biases, U13) is scored s = w·g and the single global argmax
is set to 0, but only if its score is > 0 (otherwise the iteration changes nothing). A zeroed entry
scores 0 and is never picked again. The loop runs ⌈ratio·P⌉ iterations with P = all trainable
parameters, embeddings included, although only MLP entries are candidates (U8, WQ4); the stream is
re-shuffled at every pass.

Departures from upstream: the retain set excludes the noised rows (U6); losses count real tokens
only (Q7); the batch size is the task's (U7; 64 on TinyMem as upstream hard-codes).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import torch
from transformers import GPT2LMHeadModel

from tinymem.metrics import per_row_loss
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register
from tinymem.mitigations.unlearning.weights import (
    check_ratio,
    labelled_stream,
    mlp_params,
    n_iterations,
    n_trainable,
    split_flat,
    zeroing_output,
)


@dataclass(frozen=True)
class GreedyConfig:
    ratio: float = 1e-3  # iterations = ⌈ratio·P⌉, P = all trainable parameters; paper grid 1e-5 … 0.05

    def __post_init__(self) -> None:
        check_ratio(self.ratio)


def run_greedy(model: GPT2LMHeadModel, task: UnlearnTask, cfg: GreedyConfig) -> UnlearnOutput:
    params = mlp_params(model)
    tensors = list(params.values())
    ends = list(itertools.accumulate(p.numel() for p in tensors))
    zeroed = torch.zeros(ends[-1], dtype=torch.bool)
    stream = labelled_stream(task, task.generator("data_order"))
    model.train()  # upstream scores in train mode; TinyMem has no dropout (U13)
    for _ in range(n_iterations(cfg.ratio, n_trainable(model))):
        rows, is_forget = next(stream)
        losses = per_row_loss(model(input_ids=rows, use_cache=False).logits, rows, task.pad_id)
        loss = losses[~is_forget].sum() - losses[is_forget].sum()
        grads = torch.autograd.grad(loss, tensors)
        with torch.no_grad():
            scores = torch.cat([(w * g).flatten() for w, g in zip(tensors, grads)])
            best = int(scores.argmax())
            if float(scores[best]) <= 0.0:
                continue  # upstream's running maximum starts at 0: nothing is picked
            zeroed[best] = True
            i = bisect.bisect_right(ends, best)
            tensors[i].view(-1)[best - (ends[i - 1] if i else 0)] = 0.0
    return zeroing_output(model, split_flat(zeroed, params), n_candidates=ends[-1])


register("greedy", GreedyConfig, run_greedy, level="weight", paper_name="Greedy")
