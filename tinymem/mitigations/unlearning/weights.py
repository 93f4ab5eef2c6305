"""Machinery shared by the weight-level unlearning methods (reference: unlearning.md B.1–B.5, U12).

One place for: which parameters are candidates (upstream: every parameter whose name contains
``"mlp"``, weights and biases; the Subnet family and the random control: the MLP weight matrices
only), how ``ratio`` becomes a count (⌊ratio·n⌋ per tensor or over all candidates, U8), top-k
selection, in-place zeroing with a record of what was zeroed, forget/retain batching over real
tokens (Q7), and the "which entries changed" record of the methods that update every weight.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor, nn

from tinymem.metrics import trim
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask
from tinymem.mitigations.unlearning.supermask import drop_count


def check_ratio(ratio: float) -> None:
    """A config's ``ratio`` must lie in [0, 1)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must lie in [0, 1), got {ratio}")


def mlp_params(model: nn.Module, *, weights_only: bool = False) -> dict[str, nn.Parameter]:
    """The MLP parameters in model order: name → parameter.

    Upstream's candidates are every parameter whose name contains ``"mlp"`` (GPT-2: ``c_fc`` and
    ``c_proj``, weights and biases; U13). ``weights_only`` keeps the 2-D weight matrices, the
    tensors the Subnet family masks (biases never).
    """
    out = {n: p for n, p in model.named_parameters() if ".mlp." in f".{n}"}
    if weights_only:
        out = {n: p for n, p in out.items() if p.dim() == 2}
    if not out:
        raise ValueError("model has no MLP parameters (no parameter name contains 'mlp')")
    return out


def n_trainable(model: nn.Module) -> int:
    """Number of trainable parameters of the whole model (Greedy's P, embeddings included; U8)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def top_k_mask(scores: Tensor, k: int) -> Tensor:
    """Bool mask (shape of ``scores``) of its ``k`` largest entries; all False when k ≤ 0."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        mask[torch.topk(scores.flatten(), k).indices] = True
    return mask.view_as(scores)


def per_tensor_top(scores: dict[str, Tensor], ratio: float) -> dict[str, Tensor]:
    """Per tensor, the top ⌊ratio·numel⌋ entries by score (Durable, SOU)."""
    return {n: top_k_mask(s, drop_count(s.numel(), ratio)) for n, s in scores.items()}


def global_top(scores: dict[str, Tensor], ratio: float) -> dict[str, Tensor]:
    """The top ⌊ratio·N⌋ entries by score over all tensors at once, N = their total size
    (Durable Aggregate), split back per tensor."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    return split_flat(top_k_mask(flat, drop_count(flat.numel(), ratio)), scores)


def split_flat(flat: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Cut a flat vector laid out as the concatenation of ``like``'s tensors back into them."""
    out, start = {}, 0
    for n, t in like.items():
        out[n] = flat[start : start + t.numel()].view(t.shape)
        start += t.numel()
    return out


@torch.no_grad()
def zero_entries(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Set the masked entries of the named parameters to exactly 0, in place."""
    params = dict(model.named_parameters())
    for n, m in masks.items():
        params[n].masked_fill_(m.to(params[n].device), 0.0)


def zeroing_output(model: nn.Module, masks: dict[str, Tensor], n_candidates: int) -> UnlearnOutput:
    """The output of a method that zeroed ``masks``; ``n_changed`` counts the chosen entries."""
    masks = {n: m.detach().cpu() for n, m in masks.items()}
    return UnlearnOutput(model=model, n_changed=sum(int(m.sum()) for m in masks.values()),
                         n_candidates=n_candidates, mask=masks)


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of every parameter, to find later which entries changed."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed_output(model: nn.Module, before: dict[str, Tensor]) -> UnlearnOutput:
    """The output of a method that updated weights: mask = entries whose value changed,
    ``n_candidates`` = all parameters."""
    masks = {n: (p.detach() != before[n]).cpu() for n, p in model.named_parameters()}
    return UnlearnOutput(model=model, n_changed=sum(int(m.sum()) for m in masks.values()),
                         n_candidates=sum(m.numel() for m in masks.values()), mask=masks)


def batches(rows: Tensor, task: UnlearnTask, batch_size: int | None = None,
            generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """One pass over ``rows`` in batches (PAD-only trailing columns trimmed, moved to the task's
    device); in order, or shuffled by ``generator``."""
    bs = batch_size or task.batch_size
    order = torch.randperm(len(rows), generator=generator) if generator is not None else torch.arange(len(rows))
    for start in range(0, len(rows), bs):
        yield trim(rows[order[start : start + bs]], task.pad_id).to(task.device)


def endless_batches(rows: Tensor, task: UnlearnTask, generator: torch.Generator,
                    batch_size: int | None = None) -> Iterator[Tensor]:
    """Shuffled passes over ``rows`` for ever, reshuffled each pass (a re-iterated shuffled loader)."""
    if len(rows) == 0:
        raise ValueError("cannot draw batches from an empty set")
    while True:
        yield from batches(rows, task, batch_size, generator)


def labelled_stream(task: UnlearnTask, generator: torch.Generator,
                    batch_size: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Forget (label True, upstream's y = +1) ∪ retain (False, y = −1) rows in shuffled batches,
    reshuffled every pass, for ever: ``(rows, is_forget)`` on the task's device."""
    rows = torch.cat([task.forget, task.retain])
    is_forget = torch.cat([torch.ones(len(task.forget), dtype=torch.bool), torch.zeros(len(task.retain), dtype=torch.bool)])
    if len(rows) == 0:
        raise ValueError("cannot draw batches from an empty set")
    bs = batch_size or task.batch_size
    while True:
        perm = torch.randperm(len(rows), generator=generator)
        for start in range(0, len(rows), bs):
            b = perm[start : start + bs]
            yield trim(rows[b], task.pad_id).to(task.device), is_forget[b].to(task.device)


def n_iterations(ratio: float, total: int) -> int:
    """⌈ratio·total⌉ (Greedy's iteration count, U8)."""
    return int(math.ceil(ratio * total))
