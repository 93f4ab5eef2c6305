"""Train-time regularizers (paper §4.1; reference training.md §7, quirks Q1–Q4, Q8, Q9).

Each regularizer is an :class:`~tinymem.training.Objective`: the single training loop
(:func:`tinymem.training.train`) calls ``prepare(model, data)`` once, ``loss(model, rows,
example_ids)`` every step, and saves ``state_dict()`` in its resumable training state, so a killed
and resumed run ends with the same weights as an uninterrupted one.

* ``spectral_norm`` (:class:`SpectralNormObjective`): LM loss + (λ/2)·Σσ over weight matrices,
  attention matrices split per head, σ by one power iteration per step with persistent u vectors.
* ``loss_truncation`` (:class:`LossTruncationObjective`): drops the highest-loss sequences
  (Kang & Hashimoto 2020), with upstream's ring buffer, recompute schedule and reduction (Q8).
* ``example_tied_dropout`` (:class:`ExampleTiedDropoutObjective`): per-example masks over the
  hidden channels of every block input (Maini et al. 2023), our decision Q9; the eval-time
  forward pass differs from the plain model, so a model file needs :func:`apply_eval_hooks`.

Build one by name with :func:`make_objective`; unknown names or hyperparameters raise naming them.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import GPT2LMHeadModel

from tinymem.data.core import TinyMemData
from tinymem.metrics import lm_loss, per_row_loss
from tinymem.training import LMObjective, Objective

log = logging.getLogger(__name__)


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 finalizer, chained): distinct tuples, distinct seeds."""
    mask = (1 << 64) - 1
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & mask)) & mask
        h = (h + 0x9E3779B97F4A7C15) & mask
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & mask
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & mask
        h ^= h >> 31
    return h & ((1 << 63) - 1)


def _check_unit(name: str, value: float, *, low_open: bool = False, high_open: bool = False) -> None:
    lo_ok = value > 0 if low_open else value >= 0
    hi_ok = value < 1 if high_open else value <= 1
    if not (lo_ok and hi_ok):
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {lo}0, 1{hi}, got {value}")


# --------------------------------------------------------------------------------------------
# Spectral norm regularization (training.md §7.1)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectralNormConfig:
    """Spectral norm regularizer (upstream ``--spectral_reg --lam``)."""

    lam: float = 0.01  # λ; penalty (λ/2)·Σσ; upstream default 0.01, paper grid {0.001, 0.01, 0.1}
    seed: int = 0  # seeds the initial u vectors (dedicated generator; upstream used the global RNG)

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")


def spectral_matrices(model: torch.nn.Module) -> list[tuple[str, int]]:
    """``(parameter name, number of blocks)`` of every regularized matrix, in parameter order.

    Upstream's rule: every parameter whose name contains none of ``ln``, ``wte``, ``wpe``,
    ``bias`` (the LM head is tied to ``wte`` and so excluded). ``attn.c_attn`` (d × 3d) is cut along
    its last dim into 3·n_head blocks (Q, K, V per head), ``attn.c_proj`` (d × d) into n_head
    blocks; every other matrix is one block. Upstream hard-coded 4 heads; we read n_head from the
    model (the same in every paper model).
    """
    n_head = int(model.config.n_head)
    out = []
    for name, _ in model.named_parameters():
        if any(s in name for s in ("ln", "wte", "wpe", "bias")):
            continue
        if "attn.c_attn" in name:
            out.append((name, 3 * n_head))
        elif "attn.c_proj" in name:
            out.append((name, n_head))
        else:
            out.append((name, 1))
    return out


def _blocks(weight: Tensor, n_blocks: int) -> Tensor:
    """``[n_blocks, rows, cols/n_blocks]``: block i is ``weight[:, i·c:(i+1)·c]`` (``chunk(n, -1)``)."""
    rows, cols = weight.shape
    if cols % n_blocks:
        raise ValueError(f"a {rows}×{cols} matrix cannot be cut into {n_blocks} equal column blocks")
    return weight.reshape(rows, n_blocks, cols // n_blocks).transpose(0, 1)


def power_iteration(blocks: Tensor, u: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """One power-iteration step per block; returns (σ ``[n]`` with gradient to ``blocks``, new u).

    Under ``no_grad``: v = normalize(Wᵀu), u = normalize(W v); then σ = uᵀ W v (differentiable).
    """
    with torch.no_grad():
        v = F.normalize(torch.einsum("brc,br->bc", blocks, u), dim=-1, eps=eps)
        u = F.normalize(torch.einsum("brc,bc->br", blocks, v), dim=-1, eps=eps)
    sigma = torch.einsum("br,brc,bc->b", u, blocks, v)
    return sigma, u


class SpectralNormObjective:
    """LM loss + (λ/2)·Σσ (training.md §7.1; Miyato et al. / Yoshida & Miyato 2017).

    Every regularized matrix (or per-head block, see :func:`spectral_matrices`) keeps a persistent
    vector u (initialised N(0, I) from a generator seeded by ``cfg.seed``). Each training step runs
    one power iteration under ``no_grad`` and adds (λ/2)·σ with σ = uᵀ W v, gradient flowing to W.
    The penalty is σ itself, not σ². The u vectors are part of :meth:`state_dict`, so resume is exact.
    Differences from upstream: u is initialised from a dedicated generator instead of the global
    RNG (Q3 spirit), and the LM term counts real tokens only (Q7).
    """

    name = "spectral_norm"

    def __init__(self, cfg: SpectralNormConfig, pad_id: int, pad_in_loss: bool = False) -> None:
        self.config, self.pad_id, self.pad_in_loss = cfg, pad_id, pad_in_loss
        self.u: dict[str, Tensor] = {}
        self._blocks: dict[str, int] = {}

    def prepare(self, model: GPT2LMHeadModel, data: TinyMemData | None = None) -> None:
        gen = torch.Generator().manual_seed(_mix(self.config.seed, 0x5EC7))
        params = dict(model.named_parameters())
        self._blocks = dict(spectral_matrices(model))
        self.u = {}
        for name, n in self._blocks.items():
            w = params[name]
            self.u[name] = torch.randn(n, w.shape[0], generator=gen).to(w.device)

    def sigmas(self, model: GPT2LMHeadModel, update: bool = True) -> dict[str, Tensor]:
        """σ per matrix (``[n_blocks]``) after one power iteration; ``update`` keeps the new u."""
        params = dict(model.named_parameters())
        out = {}
        for name, n in self._blocks.items():
            sigma, u = power_iteration(_blocks(params[name], n), self.u[name])
            if update:
                self.u[name] = u
            out[name] = sigma
        return out

    def penalty(self, model: GPT2LMHeadModel) -> Tensor:
        """(λ/2)·Σσ over all matrices and blocks (advances the power iteration by one step)."""
        total = torch.stack([s.sum() for s in self.sigmas(model).values()]).sum()
        return 0.5 * self.config.lam * total

    def loss(self, model: GPT2LMHeadModel, rows: Tensor, example_ids: Tensor) -> tuple[Tensor, dict[str, float]]:
        if not self._blocks:
            raise RuntimeError("SpectralNormObjective.prepare(model, data) must be called before loss()")
        ce = lm_loss(model(input_ids=rows).logits, rows, self.pad_id, self.pad_in_loss)
        pen = self.penalty(model)
        return ce + pen, {"lm_loss": float(ce.detach()), "spectral_penalty": float(pen.detach())}

    def state_dict(self) -> dict[str, Any]:
        return {"u": {k: v.detach().cpu().clone() for k, v in self.u.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("u", {})
        if set(saved) != set(self.u):
            raise ValueError(f"spectral_norm state holds u vectors for {sorted(saved)}, the model has {sorted(self.u)}")
        for k, v in saved.items():
            if v.shape != self.u[k].shape:
                raise ValueError(f"spectral_norm state: u[{k}] has shape {tuple(v.shape)}, expected {tuple(self.u[k].shape)}")
            self.u[k] = v.to(self.u[k].device).clone()


# --------------------------------------------------------------------------------------------
# Loss truncation (training.md §7.2, Q8)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossTruncationConfig:
    """Loss truncation (upstream ``--truncate_loss --dropc``; ``LossDropper``)."""

    dropc: float = 0.4  # fraction of sequences dropped; upstream default 0.4, paper grid {0.01, 0.05, 0.1}
    min_count: int = 10000  # sequences seen before any is dropped (upstream 10,000)
    recompute: int = 10000  # ring-buffer size and recompute period, in sequences (upstream 10,000)

    def __post_init__(self) -> None:
        _check_unit("dropc", self.dropc, high_open=True)
        if self.min_count < 1 or self.recompute < 1:
            raise ValueError(f"min_count and recompute must be >= 1, got {self.min_count}, {self.recompute}")


class LossDropper:
    """Upstream's ``LossDropper`` (from ddkang/loss_dropper), step for step.

    A float32 ring buffer of the ``recompute`` most recent per-sequence losses. While fewer than
    ``recompute`` (the buffer size) or fewer than ``min_count`` sequences have been seen, every
    mask is 1. After that, whenever more than ``recompute`` losses have arrived since the last
    recompute, the cutoff becomes the (1 − dropc)·100-th percentile of the buffer
    (``np.percentile``, linear interpolation); mask = (loss < cutoff). The cutoff starts at 1e8.
    """

    def __init__(self, dropc: float, min_count: int, recompute: int) -> None:
        self.keepc = 1.0 - dropc
        self.min_count, self.recompute = min_count, recompute
        self.count = 0
        self.last_computed = 0
        self.cur_idx = 0
        self.percentile_val = 100000000.0
        self.vals = np.zeros(recompute, dtype=np.float32)

    def __call__(self, losses: Tensor) -> Tensor:
        """``[B]`` 0/1 mask (dtype of ``losses``) for per-sequence ``losses`` ``[B]``."""
        flat = losses.detach().float().cpu().numpy().reshape(-1)
        n = flat.size
        self.last_computed += n
        self.count += n
        for x in flat:  # upstream writes in place while filling, then item by item with wrap-around
            self.vals[self.cur_idx] = x
            self.cur_idx = (self.cur_idx + 1) % len(self.vals)
        ones = torch.ones_like(losses)
        if self.count < len(self.vals) or self.count < self.min_count:
            return ones
        if self.last_computed > self.recompute:
            self.percentile_val = float(np.percentile(self.vals, self.keepc * 100))
            self.last_computed = 0
        return (losses.detach() < self.percentile_val).to(losses.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "last_computed": self.last_computed, "cur_idx": self.cur_idx,
                "percentile_val": self.percentile_val, "vals": torch.from_numpy(self.vals.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vals = state["vals"].numpy().astype(np.float32)
        if vals.shape != self.vals.shape:
            raise ValueError(f"loss_truncation state has a buffer of {vals.shape[0]}, config says {self.vals.shape[0]}")
        self.vals = vals.copy()
        self.count, self.last_computed = int(state["count"]), int(state["last_computed"])
        self.cur_idx, self.percentile_val = int(state["cur_idx"]), float(state["percentile_val"])


class LossTruncationObjective:
    """Loss truncation (training.md §7.2).

    Per-sequence loss = mean CE over the row's real target tokens (Q7; upstream counted PAD).
    mask = :class:`LossDropper` (upstream's buffer, schedule and strict ``loss < cutoff``).
    Batch loss = mean over the WHOLE batch of loss × mask: dropped rows count as zeros and the
    mean is not renormalised by the number kept, so the effective step shrinks by the kept
    fraction (Q8, upstream's reduction, kept because the dropc grid was run with it).
    The buffer and counters are part of :meth:`state_dict`, so resume is exact.
    """

    name = "loss_truncation"

    def __init__(self, cfg: LossTruncationConfig, pad_id: int, pad_in_loss: bool = False) -> None:
        self.config, self.pad_id, self.pad_in_loss = cfg, pad_id, pad_in_loss
        self.dropper = LossDropper(cfg.dropc, cfg.min_count, cfg.recompute)

    def prepare(self, model: GPT2LMHeadModel, data: TinyMemData | None = None) -> None:
        return None

    def reduce(self, per_row: Tensor) -> tuple[Tensor, Tensor]:
        """(batch loss, mask) for per-sequence losses ``[B]``: mean(per_row × mask) over all B rows."""
        mask = self.dropper(per_row)
        return (per_row * mask).mean(), mask

    def loss(self, model: GPT2LMHeadModel, rows: Tensor, example_ids: Tensor) -> tuple[Tensor, dict[str, float]]:
        per_row = per_row_loss(model(input_ids=rows).logits, rows, self.pad_id, self.pad_in_loss)
        loss, mask = self.reduce(per_row)
        return loss, {"kept_fraction": float(mask.mean()), "cutoff": self.dropper.percentile_val,
                      "lm_loss": float(per_row.detach().mean())}

    def state_dict(self) -> dict[str, Any]:
        return {"dropper": self.dropper.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dropper.load_state_dict(state["dropper"])


# --------------------------------------------------------------------------------------------
# Example-tied dropout (training.md §7.3, Q1–Q4, Q9, Q22)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleTiedDropoutConfig:
    """Example-tied dropout (upstream ``--example_tied_dropout``; ``ExampleTiedDropout``)."""

    p_fixed: float = 0.2  # share of hidden channels always kept (generalization channels); paper 0.2
    p_mem: float = 0.1  # keep probability of each other channel, per example; paper 0.1 (timing runs 0.01)
    seed: int = 0  # mask seed: example i's mask comes from a generator seeded with (seed, i)

    def __post_init__(self) -> None:
        _check_unit("p_fixed", self.p_fixed, low_open=True)
        _check_unit("p_mem", self.p_mem)


class TiedDropoutMasks:
    """Per-example channel masks, derived on demand (Q1, Q3, Q22) and installed as block hooks.

    Channel layout for width d: the first ``n_fixed = int(p_fixed·d)`` channels are always kept;
    each of the other ``d − n_fixed`` channels is kept with probability ``p_mem``, drawn with a
    dedicated ``torch.Generator`` seeded from ``(seed, example id)``: fixed per example, never the
    global RNG, defined for every id (never a zero mask, since n_fixed ≥ 1). Masks are cached
    (they are a pure function of the id, so the cache is not training state).

    Hook behaviour, on each ``GPT2Block``'s input hidden states (before ``ln_1``; the same mask in
    every layer): in training mode ``X · mask[example]`` (kept channels unscaled, as upstream);
    in eval mode (or always, with ``eval_only``) the memorization channels are zeroed and the
    fixed channels scaled by (p_fixed + p_mem)/p_fixed. Training mode needs the batch's example
    ids (:meth:`batch`); eval needs none (Q2). ``p_fixed == 1`` is the identity, as upstream.
    """

    CACHE_LIMIT = 1 << 18

    def __init__(self, cfg: ExampleTiedDropoutConfig, d: int, eval_only: bool = False) -> None:
        self.config, self.d, self.eval_only = cfg, d, eval_only
        self.n_fixed = int(cfg.p_fixed * d)
        if self.n_fixed < 1:
            raise ValueError(f"p_fixed={cfg.p_fixed} keeps no channel of width {d}")
        self.eval_scale = torch.zeros(d)
        self.eval_scale[: self.n_fixed] = (cfg.p_fixed + cfg.p_mem) / cfg.p_fixed
        self._cache: dict[int, Tensor] = {}
        self._batch_mask: Tensor | None = None

    def mask(self, example_id: int) -> Tensor:
        """``[d]`` float 0/1 training mask of one example."""
        i = int(example_id)
        m = self._cache.get(i)
        if m is None:
            gen = torch.Generator().manual_seed(_mix(self.config.seed, i))
            mem = torch.bernoulli(torch.full((self.d - self.n_fixed,), float(self.config.p_mem)), generator=gen)
            m = torch.cat([torch.ones(self.n_fixed), mem])
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            self._cache[i] = m
        return m

    def masks(self, example_ids: Tensor) -> Tensor:
        """``[B, d]`` training masks of a batch of example ids."""
        return torch.stack([self.mask(i) for i in example_ids.reshape(-1).tolist()])

    class _Batch:
        def __init__(self, owner: "TiedDropoutMasks", mask: Tensor) -> None:
            self.owner, self.mask = owner, mask

        def __enter__(self) -> None:
            self.owner._batch_mask = self.mask

        def __exit__(self, *exc: object) -> None:
            self.owner._batch_mask = None

    def batch(self, example_ids: Tensor, device: torch.device | str) -> "_Batch":
        """Context manager: training-mode forwards inside it use these examples' masks."""
        return self._Batch(self, self.masks(example_ids).to(device))

    def transform(self, x: Tensor, training: bool) -> Tensor:
        if self.config.p_fixed == 1:
            return x
        if training and not self.eval_only:
            m = self._batch_mask
            if m is None:
                raise RuntimeError(
                    "example-tied dropout in training mode needs the batch's example ids "
                    "(run the forward inside TiedDropoutMasks.batch(ids), or call model.eval())"
                )
            if m.shape[0] != x.shape[0]:
                raise RuntimeError(f"example-tied dropout got {m.shape[0]} masks for a batch of {x.shape[0]} rows")
            return x * m[:, None, :].to(x.dtype)
        return x * self.eval_scale.to(device=x.device, dtype=x.dtype)

    def install(self, model: GPT2LMHeadModel) -> None:
        """Register the forward pre-hooks on every block (replacing any installed earlier)."""
        remove_hooks(model)
        for block in model.transformer.h:
            block.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            args = (self.transform(args[0], module.training), *args[1:])
        else:
            kwargs = {**kwargs, "hidden_states": self.transform(kwargs["hidden_states"], module.training)}
        return args, kwargs


def installed_masks(model: torch.nn.Module) -> TiedDropoutMasks | None:
    """The :class:`TiedDropoutMasks` whose hooks are on ``model``'s blocks, if any."""
    for block in model.transformer.h:
        for hook in block._forward_pre_hooks.values():
            if isinstance(getattr(hook, "__self__", None), TiedDropoutMasks):
                return hook.__self__
    return None


def remove_hooks(model: torch.nn.Module) -> None:
    """Remove example-tied dropout hooks from ``model``'s blocks (no-op when there are none).

    Found by scanning the blocks rather than by stored handles, so it also works on deep copies.
    """
    for block in model.transformer.h:
        for key, hook in list(block._forward_pre_hooks.items()):
            if isinstance(getattr(hook, "__self__", None), TiedDropoutMasks):
                del block._forward_pre_hooks[key]
                block._forward_pre_hooks_with_kwargs.pop(key, None)


class ExampleTiedDropoutObjective:
    """Example-tied dropout (training.md §7.3; Maini et al. 2023), with our decisions Q1–Q4, Q9.

    ``prepare`` installs :class:`TiedDropoutMasks` hooks on every block; ``loss`` runs the
    training forward with the batch's example ids (duplicated copies of a row share an id and so
    a mask) and returns the real-token LM loss (Q7). In eval mode (every evaluation of the
    training loop) the hooks apply the eval-time transformation. The hooks are not saved in a
    model file: reload with :func:`apply_eval_hooks`.

    How upstream differs (``utils/dropout.py`` + ``models/gpt2_dropout.py``):

    * Q9: upstream's mask runs along the sequence axis (``X.shape[1]`` = positions: the first
      int(p_fixed·T) = 30 positions always kept, the rest kept with p_mem, broadcast over
      channels); we mask hidden channels, as the method intends ("fraction of dropped neurons").
    * Q1: upstream caches masks in a dense tensor after the first batch, so only the first
      batch's examples ever get their masks; every later example reads an all-zero mask (its
      block inputs are wiped). We derive every example's mask on demand and never return zeros.
    * Q3: upstream reseeds the global torch RNG with the example index every batch (which also
      perturbs data shuffling); we use a dedicated generator seeded from (seed, example id).
    * Q2/Q4/Q22: ids are needed only in training mode; no dense [data_len, T, d] cache; masks are
      keyed on the original example id, so they exist for any fine-tuning set.
    """

    name = "example_tied_dropout"

    def __init__(self, cfg: ExampleTiedDropoutConfig, pad_id: int, pad_in_loss: bool = False) -> None:
        self.config, self.pad_id, self.pad_in_loss = cfg, pad_id, pad_in_loss
        self.masks: TiedDropoutMasks | None = None

    def prepare(self, model: GPT2LMHeadModel, data: TinyMemData | None = None) -> None:
        self.masks = TiedDropoutMasks(self.config, int(model.config.n_embd))
        self.masks.install(model)

    def loss(self, model: GPT2LMHeadModel, rows: Tensor, example_ids: Tensor) -> tuple[Tensor, dict[str, float]]:
        if self.masks is None:
            raise RuntimeError("ExampleTiedDropoutObjective.prepare(model, data) must be called before loss()")
        with self.masks.batch(example_ids, rows.device):
            logits = model(input_ids=rows).logits
        return lm_loss(logits, rows, self.pad_id, self.pad_in_loss), {}

    def state_dict(self) -> dict[str, Any]:
        return {}  # masks are a pure function of (seed, example id)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def apply_eval_hooks(model: GPT2LMHeadModel, objective_name: str, params: dict[str, Any] | None = None) -> GPT2LMHeadModel:
    """Re-install the eval-time forward pass of a model trained with ``objective_name``.

    Call after :func:`tinymem.checkpoints.load_model`. For ``example_tied_dropout`` this installs
    hooks that zero the memorization channels and scale the fixed ones by (p_fixed + p_mem)/p_fixed
    in BOTH train and eval mode: the loaded model is the network that was evaluated, and later
    edits (unlearning, fine-tuning without the regularizer) act on that network. Other objectives
    do not change the forward pass: no-op. Returns ``model`` (modified in place).
    """
    cfg = objective_config(objective_name, params or {})
    remove_hooks(model)
    if isinstance(cfg, ExampleTiedDropoutConfig):
        TiedDropoutMasks(cfg, int(model.config.n_embd), eval_only=True).install(model)
    return model


def apply_eval_hooks_from_meta(model: GPT2LMHeadModel, meta: dict[str, Any]) -> GPT2LMHeadModel:
    """:func:`apply_eval_hooks` with the objective recorded in a model file's metadata.

    Needs ``meta["objective_params"]`` for ``example_tied_dropout`` (raises if absent rather than
    guessing p_fixed/p_mem).
    """
    name = meta.get("objective", "none") or "none"
    if name == ExampleTiedDropoutObjective.name and "objective_params" not in meta:
        raise ValueError("model file was trained with example_tied_dropout but records no objective_params; "
                         "call apply_eval_hooks(model, 'example_tied_dropout', params) with the run's params")
    return apply_eval_hooks(model, name, meta.get("objective_params", {}))


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NoneConfig:
    """The plain LM objective has no hyperparameters."""


OBJECTIVES: dict[str, tuple[type, Callable[..., Objective]]] = {
    "none": (_NoneConfig, lambda cfg, pad_id, pad_in_loss: LMObjective(pad_id, pad_in_loss)),
    SpectralNormObjective.name: (SpectralNormConfig, SpectralNormObjective),
    LossTruncationObjective.name: (LossTruncationConfig, LossTruncationObjective),
    ExampleTiedDropoutObjective.name: (ExampleTiedDropoutConfig, ExampleTiedDropoutObjective),
}


def objective_config(name: str, params: dict[str, Any]) -> Any:
    """The frozen config of objective ``name``; unknown names or keys raise, naming them."""
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; known: {', '.join(sorted(OBJECTIVES))}")
    cls = OBJECTIVES[name][0]
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for objective {name!r}; allowed: {sorted(allowed)}")
    return cls(**params)


def make_objective(name: str, params: dict[str, Any] | None, pad_id: int, pad_in_loss: bool = False) -> Objective:
    """Build an objective by name: ``none``, ``spectral_norm``, ``loss_truncation``,
    ``example_tied_dropout``. The result exposes ``.config`` (the frozen config) except ``none``."""
    cfg = objective_config(name, params or {})
    return OBJECTIVES[name][1](cfg, pad_id, pad_in_loss)


def objective_params(objective: Objective) -> dict[str, Any]:
    """The hyperparameters of an objective as a plain dict (empty for the plain LM loss)."""
    cfg = getattr(objective, "config", None)
    return dataclasses.asdict(cfg) if cfg is not None else {}
