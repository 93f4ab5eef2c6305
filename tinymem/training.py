"""One training loop for every TinyMem model (reference: training.md §6; style P4).

Reads top to bottom like nanoGPT's ``train.py``: AdamW (lr 1e-3, betas (0.9, 0.98), weight decay
0.1, no schedule), shuffled batches, evaluation at checkpoint labels. Regularizers plug in as an
:class:`Objective` (a loss and optional model hooks), never as copies of the loop.

Resume (Q15): the full training state (weights, optimizer, the shuffle generator, the epoch's
permutation and the step within it, the objective's own state, the metric history) is written
atomically to ``resume_dir`` at every checkpoint label, and mid-epoch when a stop is requested
(SIGTERM/SIGUSR1 from SLURM before a time limit). A rerun continues from the most advanced state
and ends with the same weights as an uninterrupted run.

Epoch labels (Q12): epochs are labelled 0…E and the loop runs E + 1 passes; label e is the state
after pass e + 1, and a checkpoint is taken when e % checkpoint_every == 0 and at E.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import GPT2LMHeadModel

from tinymem.checkpoints import save_model
from tinymem.data.core import TinyMemData
from tinymem.io import CorruptFileError, load_torch, save_torch
from tinymem.metrics import evaluate, lm_loss, trim
from tinymem.models import ModelConfig, build_model

log = logging.getLogger(__name__)

STATE_FORMAT = "tinymem-train-state/1"
_STATE_RE = re.compile(r"state_e(\d+)_s(\d+)\.pt$")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings. Defaults are the paper's (training.md §6.1)."""

    epochs: int = 3500  # last epoch label E; E + 1 passes (Q12)
    checkpoint_every: int = 50  # evaluate and checkpoint when label % every == 0
    batch_size: int = 128
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.98
    weight_decay: float = 0.1  # upstream's --l2-reg, applied to all parameters
    seed: int = 0  # model init and data order
    pad_in_loss: bool = False  # Q7: True reproduces upstream (PAD counted in the loss)
    eval_batch_size: int = 256
    export_epochs: tuple[int, ...] = ()  # labels written as model files (the final label always is)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.checkpoint_every < 1 or self.batch_size < 1:
            raise ValueError(f"invalid TrainConfig {self}")
        object.__setattr__(self, "export_epochs", tuple(sorted(set(self.export_epochs))))
        bad = [e for e in self.export_epochs if e not in self.checkpoint_labels()]
        if bad:
            raise ValueError(f"export_epochs {bad} are not checkpoint labels of {self.epochs} epochs every {self.checkpoint_every}")

    def checkpoint_labels(self) -> list[int]:
        labels = list(range(0, self.epochs + 1, self.checkpoint_every))
        if labels[-1] != self.epochs:
            labels.append(self.epochs)
        return labels

    def exported(self) -> list[int]:
        return sorted(set(self.export_epochs) | {self.epochs})


class Objective(Protocol):
    """What a regularizer changes: the loss, optional model hooks, and its own resumable state."""

    name: str

    def prepare(self, model: GPT2LMHeadModel, data: TinyMemData) -> None: ...

    def loss(self, model: GPT2LMHeadModel, rows: Tensor, example_ids: Tensor) -> tuple[Tensor, dict[str, float]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LMObjective:
    """The plain language-modelling loss: token-mean CE over real tokens (Q7)."""

    pad_id: int
    pad_in_loss: bool = False
    name: str = "none"

    def prepare(self, model: GPT2LMHeadModel, data: TinyMemData) -> None:
        return None

    def loss(self, model: GPT2LMHeadModel, rows: Tensor, example_ids: Tensor) -> tuple[Tensor, dict[str, float]]:
        logits = model(input_ids=rows).logits
        return lm_loss(logits, rows, self.pad_id, self.pad_in_loss), {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class Preempted(RuntimeError):
    """Training stopped on request after writing a resumable state."""


@dataclass
class StopFlag:
    """Set by a signal handler; the loop checks it after every optimizer step."""

    requested: bool = False
    signum: int | None = None

    def __call__(self) -> bool:
        return self.requested


def install_stop_handler(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR1)) -> StopFlag:
    """Trap SLURM's pre-timeout signals: the next step boundary writes a state and exits."""
    flag = StopFlag()

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        flag.requested, flag.signum = True, signum
        log.warning("received signal %d: checkpointing at the next step and stopping", signum)

    for s in signals:
        signal.signal(s, handler)
    return flag


@dataclass
class _State:
    epoch: int = 0  # label of the epoch in progress (or next to start)
    step: int = 0  # optimizer steps done within that epoch
    perm: Tensor | None = None  # that epoch's row order
    loss_sum: float = 0.0
    loss_rows: int = 0
    log_sums: dict[str, float] = field(default_factory=dict)  # the objective's logged terms, row-weighted
    history: list[dict[str, Any]] = field(default_factory=list)


def _state_path(resume_dir: Path, epoch: int, step: int) -> Path:
    return resume_dir / f"state_e{epoch:06d}_s{step:07d}.pt"


def latest_state(resume_dir: str | Path) -> Path | None:
    """The most advanced training state in ``resume_dir`` (by epoch label, then step), if any."""
    d = Path(resume_dir)
    if not d.is_dir():
        return None
    found = [(tuple(map(int, m.groups())), p) for p in d.iterdir() if (m := _STATE_RE.search(p.name))]
    return max(found)[1] if found else None


def _rows_per_step(n: int, batch: int) -> int:
    return math.ceil(n / batch)


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    data: TinyMemData,
    resume_dir: str | Path,
    out_dir: str | Path,
    objective: Objective | None = None,
    stop: Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    labels: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Train (or resume) one model; write ``epoch{E}.pt`` model files and return the history.

    ``out_dir`` receives one model file per exported label; ``resume_dir`` holds the training
    states and must not be a declared workflow output. ``labels`` are identifying columns (model
    id, data id, …) put first in the returned history. Raises :class:`Preempted` after writing a
    state when ``stop()`` becomes true.
    """
    resume_dir, out_dir = Path(resume_dir), Path(out_dir)
    objective = objective or LMObjective(data.tokens.pad_id, cfg.pad_in_loss)
    model = build_model(model_cfg, seed=cfg.seed).to(device)
    objective.prepare(model, data)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    order = torch.Generator().manual_seed(cfg.seed)
    st = _State()
    ckpt_labels = set(cfg.checkpoint_labels())

    path = latest_state(resume_dir)
    if path is not None:
        saved = load_torch(path, what="training state")
        if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
            raise CorruptFileError(f"training state {path} is not a {STATE_FORMAT} file")
        if saved["model_config"] != model_cfg.to_dict():
            raise ValueError(
                f"training state {path} was written for {saved['model_config']}, not {model_cfg.to_dict()}; "
                f"delete {resume_dir} to start over"
            )
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        order.set_state(saved["order_rng"])
        objective.load_state_dict(saved["objective"])
        st = _State(**saved["progress"])
        log.info("resumed from %s (epoch %d, step %d)", path, st.epoch, st.step)

    def save_state() -> Path:
        p = _state_path(resume_dir, st.epoch, st.step)
        save_torch(
            {"format": STATE_FORMAT, "model_config": model_cfg.to_dict(), "train_config": asdict(cfg),
             "model": model.state_dict(), "optimizer": opt.state_dict(), "order_rng": order.get_state(),
             "objective": objective.state_dict(), "progress": asdict(st)},
            p,
        )
        # Keep labelled states that will be exported; drop superseded mid-epoch/unexported ones.
        for old in resume_dir.glob("state_e*_s*.pt"):
            m = _STATE_RE.search(old.name)
            if old == p or m is None:
                continue
            e, s = map(int, m.groups())
            if s == 0 and (e - 1) in cfg.exported():
                continue
            old.unlink()
        return p

    rows, ids = data.train, data.train_example_id
    n = len(rows)
    steps_per_epoch = _rows_per_step(n, cfg.batch_size)
    bar = tqdm(total=cfg.epochs + 1, initial=st.epoch, desc="epochs", disable=not progress, dynamic_ncols=True)
    model.train()
    t0 = time.monotonic()
    while st.epoch <= cfg.epochs:
        if st.perm is None:
            st.perm = torch.randperm(n, generator=order)
        while st.step < steps_per_epoch:
            b = st.perm[st.step * cfg.batch_size : (st.step + 1) * cfg.batch_size]
            batch = rows[b]
            if not cfg.pad_in_loss:
                batch = trim(batch, data.tokens.pad_id)
            loss, logs = objective.loss(model, batch.to(device), ids[b].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            st.loss_sum += float(loss.detach()) * len(b)
            st.loss_rows += len(b)
            for key, value in logs.items():
                st.log_sums[key] = st.log_sums.get(key, 0.0) + float(value) * len(b)
            st.step += 1
            if stop is not None and stop():
                p = save_state()
                raise Preempted(f"stopped at epoch {st.epoch} step {st.step}; state saved to {p}")
        record: dict[str, Any] = {"epoch": st.epoch, "train_loss": st.loss_sum / max(st.loss_rows, 1),
                                  "seconds": time.monotonic() - t0,
                                  **{f"train_{k}": v / max(st.loss_rows, 1) for k, v in st.log_sums.items()}}
        if st.epoch in ckpt_labels:
            record.update(evaluate(model, data, cfg.eval_batch_size))
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", mem=f"{record['percent_mem']:.1f}%")
        st.history.append(record)
        finished = st.epoch
        st.epoch, st.step, st.perm, st.loss_sum, st.loss_rows, st.log_sums = st.epoch + 1, 0, None, 0.0, 0, {}
        bar.update(1)
        if finished in ckpt_labels:
            save_state()
    bar.close()

    history = pd.DataFrame(st.history)
    for i, (col, value) in enumerate((labels or {}).items()):
        history.insert(i, col, value)  # identifying columns (model id, data id, …) first
    for col, value in (("kind", data.kind), ("artifact", data.artifact), ("family", data.meta.get("family", data.kind)),
                       ("n_layer", model_cfg.n_layer), ("seed", cfg.seed), ("objective", objective.name)):
        history[col] = value
    out_dir.mkdir(parents=True, exist_ok=True)
    for label in cfg.exported():
        state = load_torch(_state_path(resume_dir, label + 1, 0), what="training state")
        export = build_model(model_cfg)
        export.load_state_dict(state["model"])
        metrics = {k: v for k, v in history[history.epoch == label].iloc[0].items() if pd.notna(v)}
        save_model(out_dir / f"epoch{label}.pt", export, model_cfg,
                   {"epoch": label, "train_config": asdict(cfg), "objective": objective.name,
                    "objective_params": asdict(cfg_obj) if (cfg_obj := getattr(objective, "config", None)) is not None else {},
                    "metrics": metrics, "data": data.meta},
                   optimizer_state=state["optimizer"])
    return history
