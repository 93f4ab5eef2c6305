"""Integrated Gradients: knowledge-neuron attribution of each continuation token's probability to
the MLP neurons (Dai et al. 2022 via MemPi, Chang et al. 2024; Sakarvadia et al. 2025 app. A.3;
reference unlearning.md A.6, upstream ``neuron/integrated_gradients.py`` → ``ig``).

For a forget row ``x``, layer ``l`` and continuation position ``t`` (``prompt_len − 1`` … ``T − 2``):
replace the layer-``l`` activations at ``t`` by ``α_k · a[l, t]`` with ``α_k`` = linspace(0, 1,
``ig_steps``) (baseline 0, both ends included), take the gradient of ``P(x[t+1] | x[:t+1])`` at
position ``t`` with respect to that vector, and set ``IG[l, t, j] = a[l, t, j] · mean_k grad_k[j]``.
Average over positions, then over rows; the ``⌊inner · ratio⌋`` largest signed scores of each layer
are zeroed through ``c_fc``.

Departures from upstream: ``ig_steps`` is honoured (upstream hard-codes 20, the paper value) and
IG scores the forget set like every other method (upstream always feeds it the memorized rows)
(U4); target positions are real tokens only (upstream includes PAD; Q7); layers by index (U1).
All positions and path steps of a row and layer go through one batched pass that resumes at block
``l + 1`` from the traced residual stream, each position attending to the unpatched keys/values of
the earlier ones — the same numbers as upstream's prefix-by-prefix hook on ``mlp.act``, at a
fraction of the cost. ``max_rows`` bounds the forget rows scored (a seeded random subset) for CPU
cost; the paper scores all of them (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import GPT2LMHeadModel

from tinymem.metrics import trim
from tinymem.mitigations.unlearning import neurons
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register


@dataclass(frozen=True)
class IntegratedGradientsConfig:
    ratio: float = 0.01  # fraction of each layer's neurons zeroed (⌊inner·ratio⌋); paper grid {1e-3, 1e-2, 0.05}
    ig_steps: int = 20  # points on the path from 0 to the activation, both ends included; paper 20
    max_rows: int | None = None  # forget rows scored (seeded random subset); None = all (paper)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")
        if self.ig_steps < 2:
            raise ValueError(f"ig_steps must be >= 2 (the path includes both ends), got {self.ig_steps}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 or None, got {self.max_rows}")


def row_attribution(model: GPT2LMHeadModel, row: Tensor, prompt_len: int, pad_id: int, steps: int) -> Tensor | None:
    """``[L, inner]`` IG of one row ``[T]``, averaged over its continuation positions (None if it
    has none)."""
    row = trim(row[None], pad_id)
    cont = neurons.continuation_targets(row, torch.tensor([prompt_len]), pad_id)[0]  # [T-1]
    pos = torch.nonzero(cont).squeeze(1).to(row.device)  # positions t that predict x[t+1]
    if len(pos) == 0:
        return None
    tr = neurons.trace(model, row)
    keys = [k[0] for k in tr.keys]
    values = [v[0] for v in tr.values]
    target = row[0, pos + 1]
    alphas = torch.linspace(0.0, 1.0, steps, device=row.device)
    n = len(pos)
    pos_all = pos.repeat(steps)  # step-major: element s·n + i is position pos[i] at α_s
    out = []
    for layer in range(neurons.n_layers(model)):
        a = tr.acts[layer][0, pos]  # [n, inner]
        patch = (alphas[:, None, None] * a[None]).flatten(0, 1).requires_grad_(True)  # [steps·n, inner]
        resid = tr.out[layer][0, pos].repeat(steps, 1)
        hidden = resid + neurons.mlp_delta(model, layer, patch - a.repeat(steps, 1))
        logits = neurons.run_positions(model, hidden, layer + 1, pos_all, keys, values)
        prob = torch.softmax(logits, -1).gather(1, target.repeat(steps)[:, None]).sum()
        (grad,) = torch.autograd.grad(prob, patch)
        ig = a * grad.view(steps, n, -1).mean(0)  # [n, inner]
        out.append(ig.mean(0).detach().cpu())
    return torch.stack(out)


def ig_scores(model: GPT2LMHeadModel, rows: Tensor, prompt_len: Tensor, pad_id: int, steps: int) -> Tensor:
    """``[L, inner]`` mean over rows (with continuation positions) of their IG attributions."""
    total = torch.zeros(neurons.n_layers(model), neurons.inner_dim(model))
    count = 0
    dev = next(model.parameters()).device
    for row, plen in zip(rows, prompt_len.tolist()):
        attr = row_attribution(model, row.to(dev), int(plen), pad_id, steps)
        if attr is not None:
            total += attr
            count += 1
    return total / max(count, 1)


def run_integrated_gradients(
    model: GPT2LMHeadModel, task: UnlearnTask, cfg: IntegratedGradientsConfig
) -> UnlearnOutput:
    rows, plen = neurons.scored_rows(task, cfg.max_rows, "integrated_gradients_rows")
    was_training = model.training
    model.eval()
    try:
        scores = ig_scores(model.to(task.device), rows, plen, task.pad_id, cfg.ig_steps)
    finally:
        model.train(was_training)
    return neurons.ablate_top_k(model, scores, cfg.ratio, {"n_scored_rows": float(len(rows))})


register("integrated_gradients", IntegratedGradientsConfig, run_integrated_gradients, level="neuron",
         paper_name="Integrated Gradients")
