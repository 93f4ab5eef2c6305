"""Subnet: a learned supermask trained by gradient ascent on the forget set (Sakarvadia et al. 2025
app. A.3; reference unlearning.md B.5, upstream ``random_subnet.py`` → ``random``).

Every MLP weight matrix gets trainable scores S (kaiming-uniform init, seeded by the task); the
forward pass uses W ⊙ M where M drops the ⌊ratio·numel⌋ entries of smallest |S| in each matrix,
with straight-through gradients (``supermask.py``). The scores are trained for ``epochs`` unshuffled
passes over the forget set on L = −CE(forget batch), CE the token-mean cross-entropy over real
tokens (Q7), by SGD(lr, momentum, weight_decay); the final mask is baked in (W ← W ⊙ M). Biases
are never masked (U13) and the retain set is not used.

Departures from upstream: losses count real tokens only (Q7); sizes come from the model (U9); the
batch size is the task's (U7). Upstream's Pythia runs use plain SGD (momentum 0, weight decay 0,
WQ9): set ``momentum`` and ``weight_decay`` to reproduce them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2LMHeadModel

from tinymem.metrics import lm_loss
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register
from tinymem.mitigations.unlearning.supermask import mask_summary, supermasked
from tinymem.mitigations.unlearning.weights import batches, check_ratio


@dataclass(frozen=True)
class SubnetConfig:
    ratio: float = 0.1  # fraction of each MLP weight matrix dropped (⌊ratio·numel⌋); paper grid 1e-5 … 0.8
    epochs: int = 10  # unshuffled passes over the forget set; paper grid {1, 10, 20}
    lr: float = 0.1  # SGD on the mask scores (not swept upstream)
    momentum: float = 0.9  # 0 on Pythia upstream (WQ9)
    weight_decay: float = 5e-4  # 0 on Pythia upstream (WQ9)

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0.0 or self.momentum < 0.0 or self.weight_decay < 0.0:
            raise ValueError(f"need lr > 0, momentum >= 0, weight_decay >= 0; got {self.lr}, {self.momentum}, {self.weight_decay}")


def run_subnet(model: GPT2LMHeadModel, task: UnlearnTask, cfg: SubnetConfig) -> UnlearnOutput:
    model.train()  # upstream trains in train mode; TinyMem has no dropout (U13)
    with supermasked(model, cfg.ratio, task.generator("mask_init")) as masked:
        opt = torch.optim.SGD([m.scores for m in masked], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        for _ in range(cfg.epochs):
            for rows in batches(task.forget, task):  # shuffle=False upstream
                loss = -lm_loss(model(input_ids=rows, use_cache=False).logits, rows, task.pad_id)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        n_dropped, n_total, mask = mask_summary(model, masked)
    return UnlearnOutput(model=model, n_changed=n_dropped, n_candidates=n_total, mask=mask)


register("subnet", SubnetConfig, run_subnet, level="weight", paper_name="Subnet")
