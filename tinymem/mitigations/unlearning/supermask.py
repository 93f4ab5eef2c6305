"""Learned weight masks shared by Subnet and BalancedSubnet (reference: unlearning.md B.5–B.6).

An edge-popup supermask (Ramanujan et al. 2020): every MLP projection keeps its frozen weight W and
gets a trainable score tensor S of the same shape; the forward pass uses ``W ⊙ M`` where M drops
the ⌊ratio·numel⌋ entries of smallest |S| in that matrix, and the backward pass is
straight-through (∂L/∂S = sign(S) ⊙ ∂L/∂M). Biases are never masked. Sizes come from the model
(U9), so any GPT-2 width works.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from transformers import GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D


class _TopKStraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: Tensor, n_drop: int) -> Tensor:  # noqa: ARG004
        mask = torch.ones_like(scores)
        if n_drop > 0:
            idx = torch.topk(scores.flatten(), n_drop, largest=False).indices
            mask.view(-1)[idx] = 0.0
        return mask

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ARG004
        return grad, None


def drop_count(numel: int, ratio: float) -> int:
    """⌊ratio·numel⌋ entries dropped per matrix (upstream's count, U8)."""
    return int(math.floor(ratio * numel))


class MaskedConv1D(nn.Module):
    """A GPT-2 ``Conv1D`` (weight ``[in, out]``) whose weight is multiplied by a learned top-k mask."""

    def __init__(self, base: Conv1D, ratio: float, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base
        self.n_drop = drop_count(base.weight.numel(), ratio)
        scores = torch.empty_like(base.weight)
        # kaiming_uniform_(a=√5) on a [in, out] tensor: bound 1/√fan_in with fan_in = size(1).
        bound = 1.0 / math.sqrt(scores.shape[1])
        scores.uniform_(-bound, bound, generator=generator)
        self.scores = nn.Parameter(scores)

    def mask(self) -> Tensor:
        return _TopKStraightThrough.apply(self.scores.abs(), self.n_drop)

    def forward(self, x: Tensor) -> Tensor:
        w = self.base.weight * self.mask()
        size_out = x.size()[:-1] + (w.shape[1],)
        return torch.addmm(self.base.bias, x.view(-1, x.size(-1)), w).view(size_out)


@contextmanager
def supermasked(model: GPT2LMHeadModel, ratio: float, generator: torch.Generator) -> Iterator[list[MaskedConv1D]]:
    """Freeze ``model``, swap every MLP projection for a :class:`MaskedConv1D`, yield them, then
    bake the final masks into the weights (W ← W ⊙ M) and restore the plain modules."""
    for p in model.parameters():
        p.requires_grad_(False)
    masked: list[MaskedConv1D] = []
    for block in model.transformer.h:
        for name in ("c_fc", "c_proj"):
            base = getattr(block.mlp, name)
            m = MaskedConv1D(base, ratio, generator).to(base.weight.device)
            setattr(block.mlp, name, m)
            masked.append(m)
    try:
        yield masked
    finally:
        with torch.no_grad():
            for block in model.transformer.h:
                for name in ("c_fc", "c_proj"):
                    m = getattr(block.mlp, name)
                    m.base.weight.mul_(m.mask())
                    setattr(block.mlp, name, m.base)
        for p in model.parameters():
            p.requires_grad_(True)


def mask_summary(model: GPT2LMHeadModel, masked: list[MaskedConv1D]) -> tuple[int, int, dict[str, Tensor]]:
    """``(n_dropped, n_candidates, {param name: dropped-entry mask})`` of the current masks."""
    names = {id(m): f"transformer.h.{i // 2}.mlp.{'c_fc' if i % 2 == 0 else 'c_proj'}.weight" for i, m in enumerate(masked)}
    out = {names[id(m)]: (m.mask().detach() == 0) for m in masked}
    dropped = sum(int(v.sum()) for v in out.values())
    total = sum(m.base.weight.numel() for m in masked)
    return dropped, total, out
