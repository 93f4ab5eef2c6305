"""Second Order Unlearning (SOU): zero the MLP weights of largest Optimal-Brain-Surgeon saliency
under a block-diagonal empirical Fisher of the forget loss (Sakarvadia et al. 2025 app. A.3;
reference unlearning.md B.4 and U5, upstream ``obs.py`` → ``obs``, after the sparseml oBERT demo).

For every MLP tensor θ (weights and biases, U13) with d entries, split into ⌈d/B⌉ consecutive
blocks of B = ``block_size`` (the last zero-padded): start from F⁻¹ = (1/λ)·I per block and apply
``num_grads`` = m Sherman–Morrison updates u = F⁻¹g, F⁻¹ ← F⁻¹ − u·uᵀ / (m + gᵀu), one per
gradient sample g, giving the inverse of λI + (1/m)·Σ g gᵀ. Each entry scores
s_q = θ_q² / (2·[F⁻¹]_qq), and the top ⌊ratio·d⌋ entries of each tensor are zeroed. There is no OBS
weight compensation and the retain set is not used.

Departures from upstream (U5): a gradient sample is the gradient of one forget row's loss
(token-mean cross-entropy over real tokens, Q7), cleared between samples; upstream fed running
sums of batch gradients. Samples cycle over the forget rows in order, so when the forget set has
F < m rows row i recurs cᵢ times; its cᵢ identical updates are applied as one update of weight
cᵢ (u·uᵀ / (m/cᵢ + gᵀu)), which yields the same inverse. Per-row gradients of the MLP weights
are computed exactly from each layer's inputs and output gradients (the per-example-gradient
identity of Opacus; ``torch.func.vmap`` cannot trace the HF GPT-2 forward, which checks its
input ids in Python). Only the MLP tensors it edits are scored (upstream also scored every other
tensor and discarded the result). The Fisher inverse is kept in float64 (with λ = 1e-7 the
updates cancel terms of size 1/λ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

from tinymem.metrics import per_row_loss, trim
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask, register
from tinymem.mitigations.unlearning.weights import (
    check_ratio,
    mlp_params,
    per_tensor_top,
    zero_entries,
    zeroing_output,
)


@dataclass(frozen=True)
class SOUConfig:
    ratio: float = 1e-2  # fraction of each MLP tensor zeroed (⌊ratio·numel⌋); paper grid 1e-5 … 0.05
    num_grads: int = 512  # m, gradient samples in the empirical Fisher (not swept upstream)
    block_size: int = 50  # B, side of each diagonal block of the Fisher (not swept)
    lambd: float = 1e-7  # λ, dampening: the Fisher is λI + (1/m)Σ g gᵀ (not swept)

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        if self.num_grads < 1:
            raise ValueError(f"num_grads must be >= 1, got {self.num_grads}")
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if not self.lambd > 0.0:
            raise ValueError(f"lambd must be > 0, got {self.lambd}")


def per_row_mlp_grads(model: GPT2LMHeadModel, rows: Tensor, pad_id: int, names: set[str]) -> dict[str, Tensor]:
    """``{name: [B, *shape]}``: the gradient of each row's loss (token-mean CE over real tokens)
    with respect to the named MLP weights and biases, one per row of ``rows``.

    Rows do not interact in the forward pass, so with x the layer input and δ the gradient of
    Σᵢ ℓᵢ with respect to the layer output, row i's weight gradient is Σ_t x_{i,t}ᵀ δ_{i,t} and its
    bias gradient Σ_t δ_{i,t}.
    """
    layers: dict[str, nn.Module] = {
        m_name: m for m_name, m in model.named_modules()
        if isinstance(m, (Conv1D, nn.Linear)) and (f"{m_name}.weight" in names or f"{m_name}.bias" in names)
    }
    seen: dict[str, tuple[Tensor, Tensor]] = {}

    def hook(name: str):
        def save(_module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            seen[name] = (inputs[0].detach(), output)
        return save

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        logits = model(input_ids=rows, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    loss = per_row_loss(logits, rows, pad_id).sum()
    deltas = torch.autograd.grad(loss, [seen[n][1] for n in layers])
    out: dict[str, Tensor] = {}
    for (m_name, module), delta in zip(layers.items(), deltas):
        x = seen[m_name][0]
        if f"{m_name}.weight" in names:
            # Conv1D stores [in, out]; nn.Linear stores [out, in].
            eq = "bti,bto->bio" if isinstance(module, Conv1D) else "bti,bto->boi"
            out[f"{m_name}.weight"] = torch.einsum(eq, x, delta)
        if f"{m_name}.bias" in names:
            out[f"{m_name}.bias"] = delta.sum(1)
    return out


class BlockFisherInverse:
    """Inverses of the diagonal B×B blocks of λI + (1/m)·Σ g gᵀ for one flattened tensor of d
    entries, built by Sherman–Morrison updates (float64)."""

    def __init__(self, numel: int, block_size: int, lambd: float, num_grads: int, device: torch.device) -> None:
        self.d, self.b, self.m = numel, block_size, num_grads
        self.n_blocks = -(-numel // block_size)
        eye = torch.eye(block_size, dtype=torch.float64, device=device)
        self.inv = (eye / lambd).repeat(self.n_blocks, 1, 1)

    def update(self, g: Tensor, count: int = 1) -> None:
        """Add ``count`` copies of the sample g (any shape with d entries) in one update."""
        flat = torch.zeros(self.n_blocks * self.b, dtype=torch.float64, device=self.inv.device)
        flat[: self.d] = g.flatten()
        g = flat.view(self.n_blocks, self.b)
        u = torch.bmm(self.inv, g.unsqueeze(-1)).squeeze(-1)
        denom = self.m / count + (g * u).sum(-1)
        self.inv.baddbmm_(u.unsqueeze(-1), (u / denom.unsqueeze(-1)).unsqueeze(1), alpha=-1.0)

    def diagonal(self) -> Tensor:
        """[F⁻¹]_qq for the d real entries."""
        return self.inv.diagonal(dim1=1, dim2=2).flatten()[: self.d]


def run_sou(model: GPT2LMHeadModel, task: UnlearnTask, cfg: SOUConfig) -> UnlearnOutput:
    params = mlp_params(model)
    m = cfg.num_grads
    n_rows = min(len(task.forget), m)
    if n_rows == 0:
        raise ValueError("SOU needs at least one forget row")
    counts = torch.bincount(torch.arange(m) % len(task.forget), minlength=len(task.forget))[:n_rows].tolist()
    fisher = {n: BlockFisherInverse(p.numel(), cfg.block_size, cfg.lambd, m, p.device) for n, p in params.items()}
    model.train()  # upstream scores in train mode; TinyMem has no dropout (U13)
    for start in range(0, n_rows, task.batch_size):
        rows = trim(task.forget[start : min(start + task.batch_size, n_rows)], task.pad_id).to(task.device)
        grads = per_row_mlp_grads(model, rows, task.pad_id, set(params))
        for n, g in grads.items():
            for i in range(len(rows)):
                fisher[n].update(g[i].double(), counts[start + i])
    with torch.no_grad():
        scores = {n: p.detach().double().flatten().pow(2).div(2.0 * fisher[n].diagonal()).view(p.shape)
                  for n, p in params.items()}
    masks = per_tensor_top(scores, cfg.ratio)
    zero_entries(model, masks)
    return zeroing_output(model, masks, n_candidates=sum(p.numel() for p in params.values()))


register("sou", SOUConfig, run_sou, level="weight", paper_name="SOU")
