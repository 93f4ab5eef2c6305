"""Hard Concrete: an L0-regularised hard-concrete gate per MLP neuron (Louizos et al. 2018), trained
so the model keeps reproducing the forget set with as few open gates as possible; the neurons whose
gates stay most open are ablated (Chang et al. 2024, MemPi; Sakarvadia et al. 2025 app. A.3;
reference unlearning.md A.5, upstream ``neuron/hard_concrete.py`` → ``hc``).

Gate of neuron ``j`` (log-alpha ``s_j``; stretch ``(l, r) = (−0.1, 1.1)``, temperature ``β``), drawn
afresh on every forward pass, one draw per neuron shared by the batch and positions:
``u ~ U(0, 1)`` clamped to ``[1e-4, 1 − 1e-4]``, ``z = σ((log u − log(1 − u) + s_j) / β)``,
``gate = clamp(z·(r − l) + l, 0, 1)``. With the model frozen, Adam trains ``s`` on

    L = LM_CE(forget batch) + λ · mean_l mean_j σ(s_j − β · ln(−l / r)).

Score = ``σ(s)``; the ``⌊inner · ratio⌋`` largest of each layer are zeroed through ``c_fc``.
Upstream's gate scales ``c_proj``'s input columns, i.e. the same neurons' activations, which is
what the hook on ``mlp.act`` does here.

Departures from upstream (U3): gradients are cleared before every step (upstream once per epoch);
the stop criterion (regulariser < ``stop_loss``) is checked after every epoch (upstream every
10th); ``s`` is initialised from N(0, 0.01²) as upstream effectively does, and the unused
``mask_p`` is dropped; the LM loss counts real tokens only (Q7). Initial log-alpha and gate noise
come from the task's seeded generators (upstream: ``torch.manual_seed(0)``); batches of
``task.batch_size`` (U7); layers by index (U1). ``threshold`` only sets the reported sparsity
(share of ``σ(s)`` below it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import GPT2LMHeadModel

from tinymem.mitigations.unlearning import neurons
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register

STRETCH_LOW, STRETCH_HIGH = -0.1, 1.1  # (l, r) of the stretched concrete, hard-coded upstream
INIT_STD = 0.01  # std of the log-alpha init, hard-coded upstream


@dataclass(frozen=True)
class HardConcreteConfig:
    ratio: float = 0.01  # fraction of each layer's neurons zeroed (⌊inner·ratio⌋); paper grid {1e-3, 1e-2, 0.05}
    epochs: int = 5  # passes over the forget set; upstream default 5, paper grid {1, 10, 20}
    lr: float = 0.1  # Adam on the gate log-alphas
    lambda_l1: float = 1000.0  # λ, weight of the expected-L0 regulariser
    stop_loss: float = 0.1  # stop once the regulariser is below this (checked every epoch)
    beta: float = 2.0 / 3.0  # temperature β of the hard-concrete distribution
    threshold: float = 0.1  # σ(s) below it counts as "off" in the reported sparsity only

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lambda_l1 < 0:
            raise ValueError(f"lambda_l1 must be >= 0, got {self.lambda_l1}")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def sample_gate(log_alpha: Tensor, beta: float, generator: torch.Generator) -> Tensor:
    """One stretched, clipped hard-concrete draw per entry of ``log_alpha``."""
    u = torch.rand(log_alpha.shape, generator=generator).to(log_alpha.device).clamp(1e-4, 1 - 1e-4)
    z = torch.sigmoid((u.log() - (1 - u).log() + log_alpha) / beta)
    return (z * (STRETCH_HIGH - STRETCH_LOW) + STRETCH_LOW).clamp(0.0, 1.0)


def expected_l0(log_alpha: Tensor, beta: float) -> Tensor:
    """Mean over layers of the mean probability that a gate is non-zero."""
    return torch.sigmoid(log_alpha - beta * math.log(-STRETCH_LOW / STRETCH_HIGH)).mean(1).mean()


def run_hard_concrete(model: GPT2LMHeadModel, task: UnlearnTask, cfg: HardConcreteConfig) -> UnlearnOutput:
    model.to(task.device)
    L, inner = neurons.n_layers(model), neurons.inner_dim(model)
    init = torch.randn(L, inner, generator=task.generator("hard_concrete_init")) * INIT_STD
    log_alpha = init.to(task.device).requires_grad_(True)
    noise = task.generator("hard_concrete_gates")
    epochs_run = neurons.train_mask(
        model, task, log_alpha,
        gate=lambda layer: sample_gate(log_alpha[layer], cfg.beta, noise),
        reg=lambda: expected_l0(log_alpha, cfg.beta),
        epochs=cfg.epochs, lr=cfg.lr, lambda_l1=cfg.lambda_l1, stop_loss=cfg.stop_loss,
    )
    scores = torch.sigmoid(log_alpha.detach())
    info = {"epochs_run": float(epochs_run), "sparsity": float((scores < cfg.threshold).float().mean())}
    return neurons.ablate_top_k(model, scores, cfg.ratio, info)


register("hard_concrete", HardConcreteConfig, run_hard_concrete, level="neuron", paper_name="Hard Concrete")
