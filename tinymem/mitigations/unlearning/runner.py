"""Run every unlearning method's grid on one checkpoint: the body of an unlearning job.

A job loads the checkpoint and data once, finds the forget set (the artifact rows the unedited
model reproduces), evaluates the unedited model once, then runs every method's grid cell × seed
on a fresh copy of the model. Each finished cell is cached as JSON under ``cache_dir`` (an undeclared folder)
keyed by the checkpoint's content hash and the cell's parameters, so a job killed by a time limit
redoes only the cells it had not finished.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from tinymem.checkpoints import load_model
from tinymem.data.core import TinyMemData
from tinymem.io import provenance, write_json
from tinymem.metrics import evaluate, memorized_rows, selection_score
from tinymem.mitigations.unlearning.registry import UnlearnTask, config_from_dict, config_to_dict, get

log = logging.getLogger(__name__)


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def build_task(
    model: torch.nn.Module,
    data: TinyMemData,
    *,
    seed: int,
    batch_size: int,
    retain_size: int | None = None,
    retain_includes_noise: bool = False,
    device: str | torch.device = "cpu",
    forget_idx: torch.Tensor | None = None,
) -> UnlearnTask:
    """Forget = memorized artifact rows; retain = clean training rows without artifacts (U6).

    ``retain_size`` draws a seeded random subset (the paper uses 100,000 wiki chunks);
    ``retain_includes_noise`` reproduces upstream's retain set, which also holds the noised rows.
    ``forget_idx`` (the artifact rows ``model`` memorizes) skips recomputing them.
    """
    idx = memorized_rows(model, data) if forget_idx is None else forget_idx
    retain = data.retain_rows()
    if retain_includes_noise:
        retain = torch.cat([data.artifact_train.rows, retain])
    if retain_size is not None and retain_size < len(retain):
        g = torch.Generator().manual_seed(seed)
        retain = retain[torch.randperm(len(retain), generator=g)[:retain_size]]
    return UnlearnTask(
        forget=data.artifact_train.rows[idx],
        forget_prompt_len=data.artifact_train.prompt_len[idx],
        retain=retain,
        pad_id=data.tokens.pad_id,
        seed=seed,
        batch_size=batch_size,
        device=device,
    )


def _suffix(d: dict[str, float], tag: str) -> dict[str, float]:
    return {f"{k}_{tag}": v for k, v in d.items()}


def run_grids(
    model_path: str | Path,
    data: TinyMemData,
    grids: dict[str, dict[str, dict[str, Any]]],
    seeds: list[int],
    cache_dir: str | Path,
    *,
    batch_size: int = 64,
    retain_size: int | None = None,
    retain_includes_noise: bool = False,
    labels: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Every method's grid on one checkpoint: ``{method: one row per (cell, seed)}``.

    ``grids`` maps a method to its cells (canonical cell id -> hyperparameters). The checkpoint is
    loaded, hashed and evaluated once for all of them; each (cell, seed) is cached as
    ``cache_dir/<method>/<cell>__seed<s>.json``. Rows hold the hyperparameters, metrics before and
    after, the changed fraction and seconds; ``labels`` (model id, ...) are copied into every row.
    """
    # Parse every cell first: a bad hyperparameter fails before any work.
    configs = {m: {hp: config_from_dict(m, params) for hp, params in cells.items()} for m, cells in grids.items()}
    base, model_cfg, meta = load_model(model_path)
    base.to(device)
    digest = file_digest(model_path)
    before: dict[str, float] | None = None  # computed on the first cell not in the cache
    forget_idx: torch.Tensor | None = None
    stamp = provenance()
    cache_dir = Path(cache_dir)
    setting = {
        "kind": data.kind, "artifact": data.artifact, "family": data.meta.get("family", data.kind),
        "n_layer": model_cfg.n_layer, "model_seed": meta.get("train_config", {}).get("seed"),
        "train_objective": meta.get("objective", "none"), "epoch": meta.get("epoch"), **(labels or {}),
    }
    todo = [(method, hp, s) for method in configs for hp in configs[method] for s in seeds]
    rows: dict[str, list[dict[str, Any]]] = {method: [] for method in configs}
    for method, hp, seed in tqdm(todo, desc="unlearning cells", disable=not progress, dynamic_ncols=True):
        spec, cfg = get(method), configs[method][hp]
        key = {"checkpoint": digest, "method": method, "params": config_to_dict(cfg), "seed": seed,
               "batch_size": batch_size, "retain_size": retain_size, "retain_includes_noise": retain_includes_noise}
        cache = cache_dir / method / f"{hp}__seed{seed}.json"
        if cache.exists():
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                rows[method].append(cached["row"])
                continue
        if before is None:
            before = evaluate(base, data)
            forget_idx = memorized_rows(base, data)
        model = copy.deepcopy(base)
        task = build_task(model, data, seed=seed, batch_size=batch_size, retain_size=retain_size,
                          retain_includes_noise=retain_includes_noise, device=device, forget_idx=forget_idx)
        row: dict[str, Any] = {"method": method, "paper_name": spec.paper_name, "level": spec.level, **setting,
                               "hp": hp, "seed": seed, **{f"param_{k}": v for k, v in config_to_dict(cfg).items()},
                               "n_forget": len(task.forget), "n_retain": len(task.retain), **_suffix(before, "before")}
        if len(task.forget) == 0:
            # Nothing memorized: nothing to unlearn (upstream skips such checkpoints).
            row.update({"status": "skipped_no_memorization", **_suffix(before, "after"), "n_changed": 0,
                        "n_candidates": 0, "frac_changed": 0.0, "seconds": 0.0, "score": float("nan")})
        else:
            torch.manual_seed(seed)  # for any library code that draws from the global stream
            t0 = time.perf_counter()
            out = spec.run(model, task, cfg)
            seconds = time.perf_counter() - t0
            after = evaluate(out.model, data)
            row.update({"status": "ok", **_suffix(after, "after"), "n_changed": out.n_changed,
                        "n_candidates": out.n_candidates,
                        "frac_changed": out.n_changed / out.n_candidates if out.n_candidates else 0.0,
                        "seconds": seconds, "score": selection_score(before, after, data.kind),
                        **{f"info_{k}": v for k, v in out.info.items()}})
            log.info("%s %s seed %d: memorization %.1f%% -> %.1f%% in %.2f s", method, hp, seed,
                     before["percent_mem"], after["percent_mem"], seconds)
        row.update(stamp)
        write_json({"key": key, "row": row}, cache, sort_keys=False)  # key order = column order
        rows[method].append(row)
    # A method left with no cells on this checkpoint (unlearning.exclude) gets a header-only table.
    empty = ["method", "hp", "seed", *(labels or {})]
    return {method: pd.DataFrame(r) if r else pd.DataFrame(columns=empty) for method, r in rows.items()}
