"""Fine-tuning mitigations (paper §4.2; reference training.md §8, upstream ``src/ft_toy_model.py``).

A trained model file is loaded together with the AdamW state stored at its label, and training
continues with the same optimizer for ``epochs`` epochs on one of three data variants (§8.2):

* ``clean``: the clean twins of the artifact rows (``data.artifact_train.clean``: the clean
  counterparts of the noised rows, or the un-backdoored triggered rows);
* ``extra``: every clean training row without an artifact (``data.retain_rows()``);
* ``both``: ``extra`` followed by ``clean``.

The loss counts real tokens only (Q7). Every epoch is evaluated with :func:`tinymem.metrics.evaluate`
and timed: ``epoch_seconds`` is the training time of that epoch only (batches and optimizer steps;
evaluation and checkpoint writes excluded, as upstream's "Time for epoch"), ``seconds`` the
cumulative training time. Epoch 0 is the loaded model before fine-tuning (upstream labels epochs
from the base model's epoch instead; ``base_epoch`` records it).

Resume (Q15): after the initial evaluation and after every epoch, the weights, optimizer, the
shuffle generator, the objective's state and the history are written atomically to
``resume_dir`` (and mid-epoch when ``stop()`` becomes true); a rerun continues from the most
advanced state and ends with the same weights as an uninterrupted run.

A train-time regularizer can stay active during fine-tuning (upstream's timing runs, §9.4, pass
the regularizer's flags to ``ft_toy_model.py``): pass its :class:`~tinymem.training.Objective`.
A model trained with example-tied dropout and fine-tuned with another objective gets the
eval-time transformation installed from its metadata (:func:`apply_eval_hooks_from_meta`).
Fine-tuning a model that was NOT trained with example-tied dropout with that objective evaluates
every epoch, epoch 0 included, through its eval-time transformation.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from tinymem.checkpoints import load_model, load_optimizer_state, save_model
from tinymem.data.core import TinyMemData
from tinymem.io import CorruptFileError, load_torch, save_torch
from tinymem.metrics import evaluate, trim
from tinymem.mitigations.regularizers import ExampleTiedDropoutObjective, apply_eval_hooks_from_meta, objective_params
from tinymem.training import LMObjective, Objective, Preempted, _rows_per_step, _state_path, latest_state

log = logging.getLogger(__name__)

FT_STATE_FORMAT = "tinymem-finetune-state/1"
VARIANTS = ("clean", "extra", "both")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings. Defaults are the paper's (training.md §8, §9.3)."""

    variant: str = "both"  # "clean" | "extra" | "both" (§8.2)
    epochs: int = 5  # fine-tuning passes (paper 5; quick language extra/both: 2, §12.6)
    lr: float = 1e-3  # AdamW learning rate (overrides the lr stored with the optimizer state)
    batch_size: int = 128
    beta1: float = 0.9
    beta2: float = 0.98
    weight_decay: float = 0.1  # upstream's --l2-reg, applied to all parameters
    seed: int = 0  # data order of the fine-tuning passes
    pad_in_loss: bool = False  # Q7: True counts PAD in the loss as upstream
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def artifact_example_ids(data: TinyMemData) -> Tensor:
    """``[M]`` training example id of each row of ``data.artifact_train``.

    Found by matching each artifact row with an identical training row outside the retain set
    (the artifact rows, duplicates included); raises if one is missing.
    """
    keep = torch.ones(len(data.train), dtype=torch.bool)
    keep[data.retain_index] = False
    cand = torch.nonzero(keep).squeeze(1)
    weights = torch.randint(1, 2**31, (data.train.shape[1],), generator=torch.Generator().manual_seed(0))
    index: dict[int, list[int]] = {}
    for i, h in zip(cand.tolist(), (data.train[cand] * weights).sum(1).tolist()):
        index.setdefault(h, []).append(i)
    rows = data.artifact_train.rows
    out = torch.empty(len(rows), dtype=torch.long)
    for j, h in enumerate((rows * weights).sum(1).tolist()):
        hit = next((i for i in index.get(h, []) if torch.equal(data.train[i], rows[j])), None)
        if hit is None:
            raise ValueError(f"artifact_train row {j} is not among the training rows")
        out[j] = data.train_example_id[hit]
    return out


def finetune_rows(data: TinyMemData, variant: str) -> Tensor:
    """``[N, T]`` rows of a fine-tuning variant: clean twins, clean train rows, or both (extra first)."""
    if variant == "clean":
        return data.artifact_train.clean
    if variant == "extra":
        return data.retain_rows()
    if variant == "both":
        return torch.cat([data.retain_rows(), data.artifact_train.clean])
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def finetune_example_ids(data: TinyMemData, variant: str) -> Tensor:
    """``[N]`` example ids of :func:`finetune_rows` (used by example-tied dropout only).

    A clean twin takes the id of its artifact row, so it gets the mask that row was trained
    with; clean rows keep their training ids. (Upstream re-indexed the fine-tuning set from 0
    and sized its mask cache for 1,000 rows: Q4.)
    """
    if variant == "clean":
        return artifact_example_ids(data)
    if variant == "extra":
        return data.train_example_id[data.retain_index]
    if variant == "both":
        return torch.cat([data.train_example_id[data.retain_index], artifact_example_ids(data)])
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


@dataclass
class _FtState:
    epoch: int = 0  # fine-tuning epoch in progress (1…E); 0 before the initial evaluation
    step: int = 0  # optimizer steps done within that epoch
    perm: Tensor | None = None
    loss_sum: float = 0.0
    loss_rows: int = 0
    epoch_seconds: float = 0.0  # training time spent so far in the epoch in progress
    total_seconds: float = 0.0  # training time of the finished epochs
    history: list[dict[str, Any]] = field(default_factory=list)


def finetune(
    model_path: str | os.PathLike[str],
    data: TinyMemData,
    cfg: FinetuneConfig,
    resume_dir: str | os.PathLike[str],
    progress: bool = True,
    *,
    objective: Objective | None = None,
    stop: Callable[[], bool] | None = None,
    out_path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Fine-tune (or resume fine-tuning) one model file; return one row per epoch (0 = before).

    Columns: ``epoch``, ``train_loss`` (mean objective loss over the epoch's rows; NaN at 0),
    ``epoch_seconds``, ``seconds`` (cumulative training time), every :func:`evaluate` metric, and
    ``variant``, ``base_epoch``, ``objective``. ``objective`` defaults to the plain real-token LM
    loss. ``out_path`` (optional) receives the fine-tuned model file with its optimizer state.
    Raises :class:`~tinymem.training.Preempted` after writing a state when ``stop()`` is true.
    """
    resume_dir = Path(resume_dir)
    model, model_cfg, meta = load_model(model_path)
    model.to(device)
    objective = objective or LMObjective(data.tokens.pad_id, cfg.pad_in_loss)
    if meta.get("objective") == ExampleTiedDropoutObjective.name and objective.name != ExampleTiedDropoutObjective.name:
        apply_eval_hooks_from_meta(model, meta)
    objective.prepare(model, data)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    saved_opt = load_optimizer_state(model_path)
    if saved_opt is not None:
        opt.load_state_dict(saved_opt)  # continue upstream's AdamW (moments and step counts)
    else:
        log.warning("model file %s carries no optimizer state; fine-tuning starts a fresh AdamW", model_path)
    for group in opt.param_groups:  # the config's hyperparameters win over the stored ones
        group.update(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)

    rows = finetune_rows(data, cfg.variant)
    ids = finetune_example_ids(data, cfg.variant) if objective.name == ExampleTiedDropoutObjective.name \
        else torch.zeros(len(rows), dtype=torch.long)
    n = len(rows)
    steps_per_epoch = _rows_per_step(n, cfg.batch_size)
    order = torch.Generator().manual_seed(cfg.seed)
    st = _FtState()
    source = {"model_config": model_cfg.to_dict(), "base_epoch": meta.get("epoch"), "objective": objective.name,
              "objective_params": objective_params(objective)}

    path = latest_state(resume_dir)
    if path is not None:
        saved = load_torch(path, what="fine-tuning state")
        if not isinstance(saved, dict) or saved.get("format") != FT_STATE_FORMAT:
            raise CorruptFileError(f"fine-tuning state {path} is not a {FT_STATE_FORMAT} file")
        if saved["config"] != asdict(cfg) or saved["source"] != source:
            raise ValueError(f"fine-tuning state {path} was written for {saved['config']} / {saved['source']}, "
                             f"not {asdict(cfg)} / {source}; delete {resume_dir} to start over")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        order.set_state(saved["order_rng"])
        objective.load_state_dict(saved["objective"])
        st = _FtState(**saved["progress"])
        log.info("resumed fine-tuning from %s (epoch %d, step %d)", path, st.epoch, st.step)

    def save_state() -> Path:
        p = _state_path(resume_dir, st.epoch, st.step)
        save_torch({"format": FT_STATE_FORMAT, "config": asdict(cfg), "source": source,
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "order_rng": order.get_state(),
                    "objective": objective.state_dict(), "progress": asdict(st)}, p)
        for old in resume_dir.glob("state_e*_s*.pt"):
            if old != p:
                old.unlink()
        return p

    def record(epoch: int, train_loss: float) -> None:
        st.history.append({"epoch": epoch, "train_loss": train_loss, "epoch_seconds": st.epoch_seconds,
                           "seconds": st.total_seconds + st.epoch_seconds,
                           **evaluate(model, data, cfg.eval_batch_size)})

    if st.epoch == 0:
        record(0, math.nan)
        st.epoch = 1
        save_state()

    bar = tqdm(total=cfg.epochs, initial=st.epoch - 1, desc=f"finetune {cfg.variant}", disable=not progress,
               dynamic_ncols=True)
    model.train()
    while st.epoch <= cfg.epochs:
        if st.perm is None:
            st.perm = torch.randperm(n, generator=order)
        while st.step < steps_per_epoch:
            t0 = time.perf_counter()
            b = st.perm[st.step * cfg.batch_size : (st.step + 1) * cfg.batch_size]
            batch = rows[b] if cfg.pad_in_loss else trim(rows[b], data.tokens.pad_id)
            loss, _ = objective.loss(model, batch.to(device), ids[b].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            st.loss_sum += float(loss.detach()) * len(b)
            st.loss_rows += len(b)
            st.step += 1
            st.epoch_seconds += time.perf_counter() - t0
            if stop is not None and stop():
                p = save_state()
                raise Preempted(f"stopped fine-tuning at epoch {st.epoch} step {st.step}; state saved to {p}")
        record(st.epoch, st.loss_sum / max(st.loss_rows, 1))
        bar.set_postfix(loss=f"{st.history[-1]['train_loss']:.3f}", mem=f"{st.history[-1]['percent_mem']:.1f}%")
        st.total_seconds += st.epoch_seconds
        st.epoch, st.step, st.perm, st.loss_sum, st.loss_rows, st.epoch_seconds = st.epoch + 1, 0, None, 0.0, 0, 0.0
        bar.update(1)
        save_state()
    bar.close()

    history = pd.DataFrame(st.history)
    history["variant"] = cfg.variant
    history["base_epoch"] = meta.get("epoch")
    history["objective"] = objective.name
    if out_path is not None:
        final = {k: v for k, v in st.history[-1].items() if not (isinstance(v, float) and math.isnan(v))}
        # The forward pass of the saved network: example-tied dropout's eval transformation if
        # either the base model or the fine-tuning objective used it (apply_eval_hooks_from_meta).
        if objective.name == ExampleTiedDropoutObjective.name:
            eval_objective = {"objective": objective.name, "objective_params": objective_params(objective)}
        else:
            eval_objective = {k: v for k, v in meta.items() if k in ("objective", "objective_params")}
        save_model(out_path, model, model_cfg,
                   {**eval_objective, **({"data": meta["data"]} if "data" in meta else {}),
                    "epoch": cfg.epochs, "base_epoch": meta.get("epoch"), "finetune_config": asdict(cfg),
                    "finetune_objective": objective.name, "finetune_objective_params": objective_params(objective),
                    "metrics": final},
                   optimizer_state=opt.state_dict())
    return history
