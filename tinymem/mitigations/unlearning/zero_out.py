"""Zero-out: score each MLP neuron by how much ablating it alone raises the forget-set loss
(Chang et al. 2024, MemPi; Sakarvadia et al. 2025 app. A.3; reference unlearning.md A.2, upstream
``neuron/zero_out.py`` → ``zero``).

For every layer ``l`` and neuron ``j``: ``s[l, j] = L(ablate j in l) − L(no ablation)``, with ``L``
the mean over scored forget rows of each row's mean cross-entropy over its continuation targets
(predicted from ``prompt_len − 1`` on) that are real tokens. The ``⌊inner · ratio⌋`` largest
scores of each layer are then zeroed through ``c_fc`` (see :mod:`.neurons`).

Departures from upstream: the patch ablates neuron ``j`` alone (upstream keeps only ``j`` and
ablates the rest of its layer) and the loss covers continuation positions on real tokens only
(upstream: every position, prompt and PAD included) (U2); layers are addressed by index (U1).
Many ablations share one forward pass, and since an ablation changes block ``l``'s output by
``−a_j · c_proj.weight[j]`` exactly, only the blocks above ``l`` are rerun (same scores as hooking
``mlp.act``). ``max_rows`` bounds the forget rows scored (a seeded random subset) for CPU cost; the
paper scores all of them (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import GPT2LMHeadModel

from tinymem.mitigations.unlearning import neurons
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register

TOKENS_PER_PASS = 1 << 15  # rows × positions × ablated copies per forward pass (memory bound)


@dataclass(frozen=True)
class ZeroOutConfig:
    ratio: float = 0.01  # fraction of each layer's neurons zeroed (⌊inner·ratio⌋); paper grid {1e-3, 1e-2, 0.05}
    max_rows: int | None = None  # forget rows scored (seeded random subset); None = all (paper)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 or None, got {self.max_rows}")


def continuation_loss(logits: Tensor, rows: Tensor, cont: Tensor) -> Tensor:
    """``[..., B]`` mean CE per row over its continuation targets ``cont`` ``[B, T-1]`` (0 if none).

    ``logits`` is ``[..., B, T, V]`` (leading copies share ``rows`` ``[B, T]``)."""
    lead = logits.shape[:-3]
    targets = rows[:, 1:].expand(*lead, *rows[:, 1:].shape)
    nll = F.cross_entropy(logits[..., :-1, :].flatten(0, -2), targets.flatten(), reduction="none").view(targets.shape)
    nll = nll * cont
    return nll.sum(-1) / cont.sum(-1).clamp(min=1)


@torch.no_grad()
def zero_out_scores(
    model: GPT2LMHeadModel, rows: Tensor, prompt_len: Tensor, pad_id: int, batch_size: int
) -> Tensor:
    """``[L, inner]`` rise of the mean continuation loss when each neuron alone is ablated."""
    L, inner = neurons.n_layers(model), neurons.inner_dim(model)
    total = torch.zeros(L, inner)
    n_rows = 0
    for batch, plen in neurons.batches(rows, prompt_len, batch_size, pad_id):
        dev = next(model.parameters()).device
        batch = batch.to(dev)
        cont = neurons.continuation_targets(batch, plen, pad_id)
        tr = neurons.trace(model, batch)
        B, T = batch.shape
        per_pass = max(1, TOKENS_PER_PASS // (B * T))
        for layer in range(L):
            base = continuation_loss(neurons.run_blocks(model, tr.out[layer], layer + 1), batch, cont)  # [B]
            w_out = model.transformer.h[layer].mlp.c_proj.weight  # [inner, d]
            for j0 in range(0, inner, per_pass):
                js = torch.arange(j0, min(j0 + per_pass, inner), device=dev)
                # ablating j removes a_j · w_out[j] from the block output, at every position
                delta = tr.acts[layer][..., js].permute(2, 0, 1)[..., None] * w_out[js][:, None, None, :]  # [G, B, T, d]
                hidden = (tr.out[layer][None] - delta).flatten(0, 1)
                logits = neurons.run_blocks(model, hidden, layer + 1).unflatten(0, (len(js), B))
                rise = continuation_loss(logits, batch, cont) - base  # [G, B]
                total[layer, j0 : j0 + len(js)] += rise.sum(1).cpu()
        n_rows += B
    return total / max(n_rows, 1)


def run_zero_out(model: GPT2LMHeadModel, task: UnlearnTask, cfg: ZeroOutConfig) -> UnlearnOutput:
    rows, plen = neurons.scored_rows(task, cfg.max_rows, "zero_out_rows")
    was_training = model.training
    model.eval()
    try:
        scores = zero_out_scores(model.to(task.device), rows, plen, task.pad_id, task.batch_size)
    finally:
        model.train(was_training)
    return neurons.ablate_top_k(model, scores, cfg.ratio, {"n_scored_rows": float(len(rows))})


register("zero_out", ZeroOutConfig, run_zero_out, level="neuron", paper_name="Zero-out")
