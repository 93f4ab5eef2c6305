"""Activations: a neuron matters for the memorized data if it fires strongly on the continuation and
writes a large vector into the residual stream (MemPi's "largest activation" baseline; Sakarvadia et
al. 2025 app. A.3; reference unlearning.md A.3, upstream ``neuron/activations.py`` → ``act``).

``s[l, j] = |Ā[l, j]| · ‖c_proj.weight[j]‖₂``, with ``Ā[l, j]`` the mean post-activation value of
neuron ``j`` over the forget rows' continuation positions (``prompt_len − 1`` … ``T − 2``, the
positions that predict continuation tokens); the absolute value is taken after averaging, as
upstream. The ``⌊inner · ratio⌋`` largest scores of each layer are zeroed through ``c_fc``.

Departures from upstream: only positions whose target is a real token are averaged (upstream
includes PAD positions; Q7), as one token-weighted mean over (row, position) pairs (upstream: mean
over rows, then over positions, which is the same without padding); the forget rows are scored in
batches of ``task.batch_size`` (upstream: one pass) (U7); layers by index (U1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GPT2LMHeadModel

from tinymem.mitigations.unlearning import neurons
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register


@dataclass(frozen=True)
class ActivationsConfig:
    ratio: float = 0.01  # fraction of each layer's neurons zeroed (⌊inner·ratio⌋); paper grid {1e-3, 1e-2, 0.05}

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")


@torch.no_grad()
def activation_scores(
    model: GPT2LMHeadModel, rows: torch.Tensor, prompt_len: torch.Tensor, pad_id: int, batch_size: int
) -> torch.Tensor:
    """``[L, inner]`` |mean continuation activation| × output-weight norm."""
    L, inner = neurons.n_layers(model), neurons.inner_dim(model)
    dev = next(model.parameters()).device
    act_sum = torch.zeros(L, inner, dtype=torch.float64)
    count = 0
    for batch, plen in neurons.batches(rows, prompt_len, batch_size, pad_id):
        batch = batch.to(dev)
        cont = neurons.continuation_targets(batch, plen, pad_id)  # [B, T-1]: position t predicts t+1
        tr = neurons.trace(model, batch)
        for layer in range(L):
            a = tr.acts[layer][:, :-1]  # [B, T-1, inner]
            act_sum[layer] += (a * cont[..., None]).sum((0, 1)).double().cpu()
        count += int(cont.sum())
    mean_act = (act_sum / max(count, 1)).float()
    w_norm = torch.stack([block.mlp.c_proj.weight.detach().norm(dim=1).cpu() for block in model.transformer.h])
    return mean_act.abs() * w_norm


def run_activations(model: GPT2LMHeadModel, task: UnlearnTask, cfg: ActivationsConfig) -> UnlearnOutput:
    was_training = model.training
    model.eval()
    try:
        model.to(task.device)
        scores = activation_scores(model, task.forget, task.forget_prompt_len, task.pad_id, task.batch_size)
    finally:
        model.train(was_training)
    return neurons.ablate_top_k(model, scores, cfg.ratio)


register("activations", ActivationsConfig, run_activations, level="neuron", paper_name="Activations")
