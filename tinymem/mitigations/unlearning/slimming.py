"""Slimming: learn a sparse mask over MLP neurons that still lets the model reproduce the forget
set; the neurons whose mask stays high are the ones the memorized data need, and are ablated
(Chang et al. 2024, MemPi; Sakarvadia et al. 2025 app. A.3; reference unlearning.md A.4, upstream
``neuron/slimming.py`` → ``slim``).

Every layer's ``mlp.act`` output is multiplied by ``clip(c_l, 0, 1)``, ``c_l ∈ R^inner`` initialised
to 1; with the model frozen, Adam trains ``c`` on

    L = LM_CE(forget batch) + λ · Σ_l ‖c_l‖₁ / (n_layer · inner)

(the L1 term on the raw, unclipped ``c``). Score = ``clip(c, 0, 1)``; the ``⌊inner · ratio⌋``
largest of each layer are zeroed through ``c_fc``. Training stops early once the normalised L1
term falls below ``stop_loss``.

Departures from upstream (U3): gradients are cleared before every step (upstream once per epoch,
so they accumulate over an epoch's batches); the stop criterion is checked after every epoch
(upstream every 100th, so it never fires in the grid); the LM loss is the full-sequence token
mean over real tokens only (upstream includes PAD; Q7). Batches of ``task.batch_size`` (U7), no
shuffle as upstream; layers by index (U1). ``threshold`` only sets the reported sparsity
(``info["sparsity"]``: share of ``c`` below it), as upstream prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2LMHeadModel

from tinymem.mitigations.unlearning import neurons
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register


@dataclass(frozen=True)
class SlimmingConfig:
    ratio: float = 0.01  # fraction of each layer's neurons zeroed (⌊inner·ratio⌋); paper grid {1e-3, 1e-2, 0.05}
    epochs: int = 5  # passes over the forget set; upstream default 5, paper grid {1, 10, 20}
    lr: float = 0.1  # Adam on the mask c
    lambda_l1: float = 1000.0  # λ, weight of the normalised L1 term
    stop_loss: float = 0.1  # stop once the normalised L1 term is below this (checked every epoch)
    threshold: float = 0.1  # mask values below it count as "off" in the reported sparsity only

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lambda_l1 < 0:
            raise ValueError(f"lambda_l1 must be >= 0, got {self.lambda_l1}")


def run_slimming(model: GPT2LMHeadModel, task: UnlearnTask, cfg: SlimmingConfig) -> UnlearnOutput:
    model.to(task.device)
    L, inner = neurons.n_layers(model), neurons.inner_dim(model)
    c = torch.ones(L, inner, device=task.device, requires_grad=True)
    epochs_run = neurons.train_mask(
        model, task, c,
        gate=lambda layer: c[layer].clamp(0.0, 1.0),
        reg=lambda: c.abs().sum() / c.numel(),
        epochs=cfg.epochs, lr=cfg.lr, lambda_l1=cfg.lambda_l1, stop_loss=cfg.stop_loss,
    )
    scores = c.detach().clamp(0.0, 1.0)
    info = {"epochs_run": float(epochs_run), "sparsity": float((scores < cfg.threshold).float().mean())}
    return neurons.ablate_top_k(model, scores, cfg.ratio, info)


register("slimming", SlimmingConfig, run_slimming, level="neuron", paper_name="Slimming")
