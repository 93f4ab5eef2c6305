"""Gradient-ascent baselines GA+GD and GA+KL (Yao et al., ACL 2024, "Machine Unlearning of
Pre-trained Large Language Models"; not in the paper, which a reviewer asked about; reference
unlearning.md U12 and §C.E).

Both update every weight with AdamW. Each step pairs one forget batch (the forget set reshuffled
every epoch) with the next batch of a shuffled, endlessly re-drawn retain stream and minimises

    GA+GD:  −CE(forget batch) + retain_weight · CE(retain batch)
    GA+KL:  −CE(forget batch) + retain_weight · KL(p_θ₀ ‖ p_θ)(retain batch)

CE the token-mean next-token cross-entropy over real tokens (Q7); the KL is summed over the
vocabulary and averaged over the positions whose target is a real token; θ₀ is a frozen copy of the
unedited model. ``epochs`` counts passes over the forget set, so a run takes epochs·⌈F/batch⌉
steps. ``n_changed`` counts the weights whose value changed; ``n_candidates`` all weights; the mask
marks the changed entries. An empty retain set leaves only the ascent term (as U10).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import GPT2LMHeadModel

from tinymem.metrics import lm_loss, lm_targets
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register
from tinymem.mitigations.unlearning.weights import batches, changed_output, endless_batches, snapshot


@dataclass(frozen=True)
class GradientAscentConfig:
    lr: float = 1e-4  # AdamW learning rate; grid {1e-5, 1e-4, 1e-3} (U12)
    epochs: int = 5  # passes over the forget set; grid {1, 5, 10} (U12)
    retain_weight: float = 1.0  # weight of the retain term (CE for GA+GD, KL for GA+KL); Yao et al. use 1
    weight_decay: float = 0.0  # AdamW weight decay (0, the HF AdamW default Yao et al.'s code uses)

    def __post_init__(self) -> None:
        if self.lr <= 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.retain_weight < 0.0 or self.weight_decay < 0.0:
            raise ValueError(f"retain_weight and weight_decay must be >= 0, got {self.retain_weight}, {self.weight_decay}")


def kl_to_reference(logits: Tensor, ref_logits: Tensor, rows: Tensor, pad_id: int) -> Tensor:
    """KL(p_ref ‖ p) summed over the vocabulary, averaged over positions with a real target."""
    logp = F.log_softmax(logits[:, :-1].float(), -1)
    ref = F.log_softmax(ref_logits[:, :-1].float(), -1)
    kl = F.kl_div(logp, ref, log_target=True, reduction="none").sum(-1)
    real = lm_targets(rows, pad_id) != -100
    return (kl * real).sum() / real.sum().clamp(min=1)


def _run(model: GPT2LMHeadModel, task: UnlearnTask, cfg: GradientAscentConfig, retain_term: str) -> UnlearnOutput:
    before = snapshot(model)
    reference = None
    if retain_term == "kl":
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    retain = endless_batches(task.retain, task, task.generator("retain_order")) if len(task.retain) else None
    forget_order = task.generator("data_order")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()  # TinyMem has no dropout (U13)
    for _ in range(cfg.epochs):
        for rows in batches(task.forget, task, generator=forget_order):
            loss = -lm_loss(model(input_ids=rows, use_cache=False).logits, rows, task.pad_id)
            if retain is not None and cfg.retain_weight > 0.0:
                kept = next(retain)
                logits = model(input_ids=kept, use_cache=False).logits
                if reference is None:
                    term = lm_loss(logits, kept, task.pad_id)
                else:
                    with torch.no_grad():
                        ref_logits = reference(input_ids=kept, use_cache=False).logits
                    term = kl_to_reference(logits, ref_logits, kept, task.pad_id)
                loss = loss + cfg.retain_weight * term
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return changed_output(model, before)


def run_ga_gd(model: GPT2LMHeadModel, task: UnlearnTask, cfg: GradientAscentConfig) -> UnlearnOutput:
    return _run(model, task, cfg, "ce")


def run_ga_kl(model: GPT2LMHeadModel, task: UnlearnTask, cfg: GradientAscentConfig) -> UnlearnOutput:
    return _run(model, task, cfg, "kl")


register("ga_gd", GradientAscentConfig, run_ga_gd, level="model", paper_name="GA+GD")
register("ga_kl", GradientAscentConfig, run_ga_kl, level="model", paper_name="GA+KL")
