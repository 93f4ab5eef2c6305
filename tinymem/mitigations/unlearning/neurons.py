"""Machinery shared by the five neuron-level methods (reference unlearning.md A.1).

A neuron is one of the ``inner`` post-activation units of ``transformer.h[l].mlp.act``. Every
method produces a ``[n_layer, inner]`` score tensor; :func:`ablate_top_k` then takes the
``k = ⌊inner · ratio⌋`` top-scored neurons in each layer (U8: upstream's per-layer counts) and zeroes
their input weights (column ``i`` of the Conv1D ``c_fc.weight`` ``[n_embd, inner]``) and their
``c_fc`` bias entry, addressing layers by module index (U1). The pre-activation becomes exactly 0,
so the neuron contributes nothing (ReLU(0) = GELU(0) = 0); ``c_proj`` is not touched.

Scoring tools:

* :func:`patch_acts` — forward hooks on every ``mlp.act`` that rewrite its output (slimming and
  hard-concrete masks, recording).
* :func:`trace` — one pass that records, per layer, the activations, the block outputs (the
  residual stream) and the attention keys/values.
* :func:`run_blocks` / :func:`run_positions` — resume the forward pass from a layer's block output,
  over whole sequences or at single positions against cached keys/values. Ablating or rescaling
  neuron ``j`` of layer ``l`` changes that block's output by ``Δa_j · c_proj.weight[j]`` exactly
  (the MLP output is linear in its activations), so Zero-out and Integrated Gradients rerun only
  the layers above ``l`` instead of the whole model: the same numbers as patching ``mlp.act`` with a
  hook and running the full model (checked in the tests), at a fraction of the cost.

All of this assumes a GPT-2 model without dropout in scoring (TinyMem has none; U13).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor
from transformers import GPT2LMHeadModel

from tinymem.metrics import lm_loss, trim
from tinymem.mitigations.unlearning.registry import UnlearnOutput, UnlearnTask


def act_modules(model: GPT2LMHeadModel) -> list[torch.nn.Module]:
    """``mlp.act`` of every block, in layer order."""
    acts = [block.mlp.act for block in model.transformer.h]
    if len({id(a) for a in acts}) != len(acts):
        raise ValueError("blocks share one activation module; per-layer hooks would be ambiguous")
    return acts


def inner_dim(model: GPT2LMHeadModel) -> int:
    """Number of MLP neurons per layer (read from the model, U9)."""
    return int(model.transformer.h[0].mlp.c_fc.weight.shape[1])


def n_layers(model: GPT2LMHeadModel) -> int:
    return len(model.transformer.h)


def k_per_layer(inner: int, ratio: float) -> int:
    """Upstream's count ``int(inner · ratio)`` (U8): ratio 0.001 on 512 neurons gives 0."""
    return int(inner * ratio)


# ----------------------------------------------------------------------------- selection and edit


def top_k_per_layer(scores: Tensor, ratio: float) -> Tensor:
    """``[L, inner]`` bool: the ``⌊inner · ratio⌋`` largest (signed) scores of each layer.

    Ties go to the lower neuron index (stable sort), NaN scores rank last, so equal scores give
    equal masks on every run.
    """
    scores = scores.detach().float().cpu()
    scores = torch.where(torch.isnan(scores), torch.full_like(scores, -torch.inf), scores)
    k = k_per_layer(scores.shape[1], ratio)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask


@torch.no_grad()
def ablate_neurons(model: GPT2LMHeadModel, mask: Tensor) -> None:
    """Zero the ``c_fc`` input column and bias entry of every neuron set in ``mask`` ``[L, inner]``."""
    for layer, block in enumerate(model.transformer.h):  # layers by index (U1)
        sel = mask[layer].to(block.mlp.c_fc.weight.device)
        block.mlp.c_fc.weight[:, sel] = 0.0
        block.mlp.c_fc.bias[sel] = 0.0


def ablate_top_k(
    model: GPT2LMHeadModel, scores: Tensor, ratio: float, info: dict[str, float] | None = None
) -> UnlearnOutput:
    """Select the top neurons per layer, zero them, and report what changed."""
    mask = top_k_per_layer(scores, ratio)
    ablate_neurons(model, mask)
    info = {"k_per_layer": float(k_per_layer(mask.shape[1], ratio)), **(info or {})}
    return UnlearnOutput(
        model=model, n_changed=int(mask.sum()), n_candidates=mask.numel(), mask={"neurons": mask}, info=info
    )


# ----------------------------------------------------------------------------- data helpers


def scored_rows(task: UnlearnTask, max_rows: int | None, purpose: str) -> tuple[Tensor, Tensor]:
    """The forget rows a method scores and their prompt lengths: all of them, or a seeded random
    subset of ``max_rows`` (kept in their original order) to bound CPU cost."""
    n = len(task.forget)
    if max_rows is None or max_rows >= n:
        return task.forget, task.forget_prompt_len
    idx = torch.randperm(n, generator=task.generator(purpose))[:max_rows].sort().values
    return task.forget[idx], task.forget_prompt_len[idx]


def continuation_targets(rows: Tensor, prompt_len: Tensor, pad_id: int) -> Tensor:
    """``[B, T-1]`` bool: next-token targets that are continuation tokens (position ≥ prompt_len,
    i.e. predicted from ``prompt_len − 1`` onward) and real (not PAD) (U2, Q7)."""
    target_pos = torch.arange(1, rows.shape[1], device=rows.device)[None, :]
    return (target_pos >= prompt_len.to(rows.device)[:, None]) & (rows[:, 1:] != pad_id)


def batches(rows: Tensor, prompt_len: Tensor, batch_size: int, pad_id: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive batches (no shuffle, as upstream), trimmed of all-PAD trailing columns."""
    for start in range(0, len(rows), batch_size):
        b = trim(rows[start : start + batch_size], pad_id)
        yield b, prompt_len[start : start + batch_size]


# ----------------------------------------------------------------------------- hooks and traces


@contextlib.contextmanager
def patch_acts(model: GPT2LMHeadModel, fn: Callable[[int, Tensor], Tensor | None]) -> Iterator[None]:
    """Forward hooks on every ``mlp.act``: ``fn(layer, output)`` returns the replacement output
    (or None to keep it). Hooks are removed on exit, whatever happens."""
    handles = [
        act.register_forward_hook(lambda _m, _i, out, layer=layer: fn(layer, out))
        for layer, act in enumerate(act_modules(model))
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class Trace:
    """One recorded forward pass of ``rows`` ``[B, T]``; lists are indexed by layer.

    acts: ``[B, T, inner]`` post-activation MLP units; out: ``[B, T, d]`` block outputs (residual
    stream after the block); keys/values: ``[B, H, T, d_head]`` attention keys and values;
    logits: ``[B, T, V]``.
    """

    acts: list[Tensor]
    out: list[Tensor]
    keys: list[Tensor]
    values: list[Tensor]
    logits: Tensor


def _heads(x: Tensor, n_head: int) -> Tensor:
    """``[..., T, d]`` → ``[..., H, T, d_head]``."""
    return x.unflatten(-1, (n_head, -1)).transpose(-3, -2)


@torch.no_grad()
def trace(model: GPT2LMHeadModel, rows: Tensor) -> Trace:
    blocks = model.transformer.h
    n_head = model.config.n_head
    acts: dict[int, Tensor] = {}
    out: dict[int, Tensor] = {}
    qkv: dict[int, Tensor] = {}
    handles = []
    for layer, block in enumerate(blocks):
        handles.append(block.mlp.act.register_forward_hook(lambda _m, _i, o, l=layer: acts.__setitem__(l, o)))
        handles.append(block.register_forward_hook(
            lambda _m, _i, o, l=layer: out.__setitem__(l, o[0] if isinstance(o, tuple) else o)))
        handles.append(block.attn.c_attn.register_forward_hook(lambda _m, _i, o, l=layer: qkv.__setitem__(l, o)))
    try:
        logits = model(input_ids=rows, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    L = len(blocks)
    d = model.config.n_embd
    keys = [_heads(qkv[l][..., d : 2 * d], n_head) for l in range(L)]
    values = [_heads(qkv[l][..., 2 * d :], n_head) for l in range(L)]
    return Trace([acts[l] for l in range(L)], [out[l] for l in range(L)], keys, values, logits)


def mlp_delta(model: GPT2LMHeadModel, layer: int, delta_acts: Tensor) -> Tensor:
    """Change of block ``layer``'s output when its activations change by ``delta_acts`` ``[..., inner]``."""
    return delta_acts @ model.transformer.h[layer].mlp.c_proj.weight


def _attn_scale(model: GPT2LMHeadModel, layer: int) -> float:
    cfg = model.config
    scale = (cfg.n_embd // cfg.n_head) ** -0.5 if cfg.scale_attn_weights else 1.0
    if cfg.scale_attn_by_inverse_layer_idx:
        scale /= float(layer + 1)
    return scale


def head(model: GPT2LMHeadModel, hidden: Tensor) -> Tensor:
    """Logits from the residual stream after the last block."""
    return model.lm_head(model.transformer.ln_f(hidden))


def run_blocks(model: GPT2LMHeadModel, hidden: Tensor, start: int) -> Tensor:
    """Logits ``[B, T, V]`` from ``hidden`` ``[B, T, d]``, the input of block ``start`` (the output
    of block ``start − 1``), through blocks ``start…L−1`` with a causal mask, ``ln_f`` and the head."""
    T = hidden.shape[1]
    mask = torch.full((T, T), torch.finfo(hidden.dtype).min, dtype=hidden.dtype, device=hidden.device)
    mask = mask.triu(1)[None, None]  # additive causal mask (eager and sdpa attention alike)
    for block in model.transformer.h[start:]:
        o = block(hidden, attention_mask=mask)
        hidden = o[0] if isinstance(o, tuple) else o
    return head(model, hidden)


def run_positions(
    model: GPT2LMHeadModel, hidden: Tensor, start: int, pos: Tensor, keys: list[Tensor], values: list[Tensor]
) -> Tensor:
    """Logits ``[N, V]`` at single positions of one sequence, from ``hidden`` ``[N, d]``, the input
    of block ``start`` at position ``pos[n]``, when only that position's stream differs from the
    traced pass: the position attends to the traced keys/values ``[H, T, d_head]`` of the earlier
    positions and to its own new key/value. Exactly what a full causal pass would give there."""
    n_head = model.config.n_head
    d = model.config.n_embd
    T = keys[0].shape[-2] if keys else 0
    earlier = torch.arange(T, device=hidden.device)[None, :] < pos[:, None]  # [N, T]
    for layer in range(start, n_layers(model)):
        block = model.transformer.h[layer]
        qkv = block.attn.c_attn(block.ln_1(hidden))
        q, k, v = (x.unflatten(-1, (n_head, -1)) for x in qkv.split(d, dim=-1))  # [N, H, dh]
        scale = _attn_scale(model, layer)
        past = torch.einsum("nhd,htd->nht", q, keys[layer]) * scale
        past = past.masked_fill(~earlier[:, None, :], -torch.inf)
        own = (q * k).sum(-1, keepdim=True) * scale
        w = torch.softmax(torch.cat([past, own], -1), -1)
        att = torch.einsum("nht,htd->nhd", w[..., :T], values[layer]) + w[..., T:] * v
        hidden = hidden + block.attn.c_proj(att.flatten(-2))
        hidden = hidden + block.mlp(block.ln_2(hidden))
    return head(model, hidden)


# ----------------------------------------------------------------------------- learned masks


def train_mask(
    model: GPT2LMHeadModel,
    task: UnlearnTask,
    mask: Tensor,
    gate: Callable[[int], Tensor],
    reg: Callable[[], Tensor],
    *,
    epochs: int,
    lr: float,
    lambda_l1: float,
    stop_loss: float,
) -> int:
    """Adam on ``mask`` (a leaf ``[L, inner]``) with the model frozen; shared by Slimming and Hard
    Concrete. ``gate(layer)`` gives the ``[inner]`` multiplier of that layer's activations for one
    forward pass; ``reg()`` the regulariser. Loss = token-mean CE over real tokens + λ·reg, one
    step per batch with gradients cleared every step; stops after the first epoch that ends with
    ``reg() < stop_loss`` (U3). Returns the number of epochs run."""
    opt = torch.optim.Adam([mask], lr=lr)
    was_training = model.training
    model.train()  # upstream trains in train mode; TinyMem has no dropout (U13)
    epochs_run = 0
    try:
        with patch_acts(model, lambda layer, out: out * gate(layer)):
            for _ in range(epochs):
                for batch, _plen in batches(task.forget, task.forget_prompt_len, task.batch_size, task.pad_id):
                    batch = batch.to(task.device)
                    logits = model(input_ids=batch, use_cache=False).logits
                    loss = lm_loss(logits, batch, task.pad_id) + lambda_l1 * reg()
                    opt.zero_grad(set_to_none=True)
                    loss.backward(inputs=[mask])  # only the mask gets a gradient; the model stays frozen
                    opt.step()
                epochs_run += 1
                with torch.no_grad():
                    if float(reg()) < stop_loss:
                        break
    finally:
        model.train(was_training)
    return epochs_run
