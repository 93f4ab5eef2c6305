"""Random mask: a control, not in the paper. Zeroes a uniformly random ⌊ratio·numel⌋ of the entries
of each MLP weight matrix, the same count and tensors as Subnet (reference unlearning.md B.5, U8),
so a table can tell what a learned mask buys over dropping as many weights at random. Biases are
never touched; the draw is seeded by the task (``task.generator("random_mask")``); no data are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2LMHeadModel

from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register
from tinymem.mitigations.unlearning.supermask import drop_count
from tinymem.mitigations.unlearning.weights import check_ratio, mlp_params, zero_entries, zeroing_output


@dataclass(frozen=True)
class RandomMaskConfig:
    ratio: float = 0.1  # fraction of each MLP weight matrix zeroed (⌊ratio·numel⌋), as Subnet; grid as Subnet

    def __post_init__(self) -> None:
        check_ratio(self.ratio)


def run_random_mask(model: GPT2LMHeadModel, task: UnlearnTask, cfg: RandomMaskConfig) -> UnlearnOutput:
    params = mlp_params(model, weights_only=True)
    gen = task.generator("random_mask")
    masks = {}
    for n, p in params.items():
        chosen = torch.zeros(p.numel(), dtype=torch.bool)
        chosen[torch.randperm(p.numel(), generator=gen)[: drop_count(p.numel(), cfg.ratio)]] = True
        masks[n] = chosen.view(p.shape)
    zero_entries(model, masks)
    return zeroing_output(model, masks, n_candidates=sum(p.numel() for p in params.values()))


register("random_mask", RandomMaskConfig, run_random_mask, level="weight", paper_name="Random mask")
