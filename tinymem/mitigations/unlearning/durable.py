"""Durable and Durable Aggregate: zero the MLP weights with the largest forget-set gradient
(Sakarvadia et al. 2025 app. A.3, after Neurotoxin / durable backdoors; reference unlearning.md
B.3, upstream ``durable.py`` → ``durable`` and ``durable_agg``).

One unshuffled pass over the forget set accumulates G = Σ_batches ∇ CE(batch), CE the token-mean
cross-entropy of the batch over real tokens (Q7). Every MLP entry (weights and biases, U13) is
scored |G|; ``durable`` zeroes the top ⌊ratio·numel⌋ entries of each MLP tensor, ``durable_agg`` the
top ⌊ratio·N_mlp⌋ over all MLP tensors at once. The retain set is not used.

Departures from upstream: losses count real tokens only (Q7); the batch size is the task's (U7;
64 on TinyMem as upstream hard-codes); upstream's unused AdamW is not built (WQ16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2LMHeadModel

from tinymem.metrics import lm_loss
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register
from tinymem.mitigations.unlearning.weights import (
    batches,
    check_ratio,
    global_top,
    mlp_params,
    per_tensor_top,
    zero_entries,
    zeroing_output,
)


@dataclass(frozen=True)
class DurableConfig:
    ratio: float = 1e-2  # fraction of each MLP tensor zeroed (⌊ratio·numel⌋); paper grid 1e-5 … 0.05

    def __post_init__(self) -> None:
        check_ratio(self.ratio)


@dataclass(frozen=True)
class DurableAggConfig(DurableConfig):
    ratio: float = 1e-2  # fraction of all MLP entries zeroed (⌊ratio·N_mlp⌋, ranked globally); grid as Durable


def forget_gradient(model: GPT2LMHeadModel, task: UnlearnTask, params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Σ over unshuffled forget batches of ∇ token-mean CE, for ``params``."""
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    model.train()  # upstream scores in train mode; TinyMem has no dropout (U13)
    for rows in batches(task.forget, task):
        grads = torch.autograd.grad(lm_loss(model(input_ids=rows, use_cache=False).logits, rows, task.pad_id), list(params.values()))
        for n, g in zip(params, grads):
            total[n] += g
    return total


def _run(model: GPT2LMHeadModel, task: UnlearnTask, ratio: float, aggregate: bool) -> UnlearnOutput:
    params = mlp_params(model)
    scores = {n: g.abs() for n, g in forget_gradient(model, task, params).items()}
    masks = global_top(scores, ratio) if aggregate else per_tensor_top(scores, ratio)
    zero_entries(model, masks)
    return zeroing_output(model, masks, n_candidates=sum(p.numel() for p in params.values()))


def run_durable(model: GPT2LMHeadModel, task: UnlearnTask, cfg: DurableConfig) -> UnlearnOutput:
    return _run(model, task, cfg.ratio, aggregate=False)


def run_durable_agg(model: GPT2LMHeadModel, task: UnlearnTask, cfg: DurableAggConfig) -> UnlearnOutput:
    return _run(model, task, cfg.ratio, aggregate=True)


register("durable", DurableConfig, run_durable, level="weight", paper_name="Durable")
register("durable_agg", DurableAggConfig, run_durable_agg, level="weight", paper_name="Durable Aggregate")
