"""BalancedSubnet: the paper's headline unlearning method (Sakarvadia et al. 2025, §3 and app. A.3;
reference unlearning.md B.6, upstream ``random_subnet_greedy.py`` → ``random_greedy``).

The Subnet supermask (a learned top-k mask over every MLP weight matrix, straight-through scores)
trained on a two-term objective: per batch of forget (y = +1) and retain (y = −1) rows,

    L = −(1 − λ) · mean_{forget} ℓᵢ + λ · mean_{retain} ℓᵢ,

with ℓᵢ the per-row token-mean cross-entropy over real tokens (Q7) and λ = ``loss_weighting``. The
final mask is baked into the weights (W ← W ⊙ M); no weight is updated by gradient.

Departures from upstream: the retain set excludes the noised rows (U6); a batch without forget (or
retain) rows contributes exactly 0 for that term instead of a NaN mean (U10); sizes come from the
model (U9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2LMHeadModel

from tinymem.metrics import per_row_loss, trim
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register
from tinymem.mitigations.unlearning.supermask import mask_summary, supermasked


@dataclass(frozen=True)
class BalancedSubnetConfig:
    ratio: float = 0.1  # fraction of each MLP weight matrix dropped (⌊ratio·numel⌋ entries)
    epochs: int = 10  # passes over forget ∪ retain; paper grid {1, 10, 20}
    loss_weighting: float = 0.9  # λ, the retain term's weight; paper grid {0.9, 0.7, 0.5}
    lr: float = 0.1  # SGD on the mask scores (not swept upstream)
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0.0 <= self.loss_weighting <= 1.0:
            raise ValueError(f"loss_weighting must lie in [0, 1], got {self.loss_weighting}")


def balanced_loss(losses: torch.Tensor, is_forget: torch.Tensor, loss_weighting: float) -> torch.Tensor:
    """−(1−λ)·mean(forget ℓ) + λ·mean(retain ℓ); an empty term contributes exactly 0 (U10)."""
    zero = losses.sum() * 0.0
    forget = losses[is_forget].mean() if bool(is_forget.any()) else zero
    retain = losses[~is_forget].mean() if bool((~is_forget).any()) else zero
    return -(1.0 - loss_weighting) * forget + loss_weighting * retain


def run_balanced_subnet(model: GPT2LMHeadModel, task: UnlearnTask, cfg: BalancedSubnetConfig) -> UnlearnOutput:
    rows = torch.cat([task.forget, task.retain])
    is_forget = torch.cat([torch.ones(len(task.forget), dtype=torch.bool), torch.zeros(len(task.retain), dtype=torch.bool)])
    order = task.generator("data_order")
    model.train()  # upstream scores in train mode; TinyMem has no dropout (U13)
    with supermasked(model, cfg.ratio, task.generator("mask_init")) as masked:
        opt = torch.optim.SGD([m.scores for m in masked], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(rows), generator=order)
            for start in range(0, len(rows), task.batch_size):
                b = perm[start : start + task.batch_size]
                batch = trim(rows[b], task.pad_id).to(task.device)
                losses = per_row_loss(model(input_ids=batch).logits, batch, task.pad_id)
                loss = balanced_loss(losses, is_forget[b].to(task.device), cfg.loss_weighting)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        n_dropped, n_total, mask = mask_summary(model, masked)
    return UnlearnOutput(model=model, n_changed=n_dropped, n_candidates=n_total, mask=mask)


register("balanced_subnet", BalancedSubnetConfig, run_balanced_subnet, level="weight", paper_name="BalancedSubnet")
