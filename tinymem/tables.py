"""The paper's tables from result rows (reference: unlearning.md U11, C.B–C.C).

Best-run selection: per checkpoint and method, the grid cell (averaged over the method's own seeds)
with the lowest :func:`tinymem.metrics.selection_score`; ties go to the faster run, then the smaller
ratio. Tables then average the selected cells over model seeds and report the spread, as the paper
reports means over three seeds.
"""

from __future__ import annotations

import os
from typing import Iterable

import pandas as pd

from tinymem.io import CorruptFileError

SELECTION = "U11: Δmem_rel − mean Δacc_rel (math) / Δmem_rel + Δppl_rel (language), +100 if memorization unchanged"
_CELL = ["model", "epoch", "method", "hp"]
_GROUP = ["method", "paper_name", "kind", "family", "artifact", "n_layer", "epoch", "train_objective"]


def read_rows(paths: Iterable[str | os.PathLike[str]], required: Iterable[str] = ("method", "hp", "model")) -> pd.DataFrame:
    """Concatenate result CSVs; an unreadable file or a missing column is an error naming the file."""
    frames = []
    for p in paths:
        try:
            df = pd.read_csv(p)
        except Exception as exc:
            raise CorruptFileError(f"result file {p} is unreadable: {exc}") from exc
        missing = set(required) - set(df.columns)
        if missing:
            raise CorruptFileError(f"result file {p} lacks columns {sorted(missing)}")
        frames.append(df)
    if not frames:
        raise ValueError("no result files to aggregate")
    return pd.concat(frames, ignore_index=True)


def _metric_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if c.endswith(("_before", "_after"))] + ["frac_changed", "n_changed", "seconds", "score"]


def best_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, epoch, method): the best grid cell, its metrics averaged over seeds."""
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        return ok.assign(n_seeds=[])
    metrics = [c for c in _metric_columns(ok) if c in ok.columns]
    params = [c for c in ok.columns if c.startswith("param_")]
    keep = [c for c in _GROUP if c in ok.columns and c not in _CELL]
    cells = ok.groupby(_CELL, sort=True).agg(
        **{c: (c, "mean") for c in metrics},
        **{c: (c, "first") for c in params + keep},
        n_seeds=("seed", "nunique"),
    ).reset_index()
    ratio = cells["param_ratio"] if "param_ratio" in cells else pd.Series(0.0, index=cells.index)
    cells = cells.assign(_ratio=ratio.fillna(0.0)).sort_values(["score", "seconds", "_ratio"], kind="stable")
    return cells.groupby(["model", "epoch", "method"], sort=True).head(1).drop(columns="_ratio").reset_index(drop=True)


def summarize(best: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over model seeds of each best run, per method and setting."""
    if best.empty:
        return best
    group = [c for c in _GROUP if c in best.columns]
    shown = [c for c in ["percent_mem_before", "percent_mem_after", "acc_before", "acc_after",
                         "perplexity_before", "perplexity_after", "frac_changed", "seconds", "score"] if c in best.columns]
    agg = {**{c: (c, "mean") for c in shown}, **{f"{c}_std": (c, "std") for c in shown if c != "score"},
           "n_models": ("model", "nunique"), "best_hp": ("hp", lambda s: s.mode().iloc[0])}
    out = best.groupby(group, sort=True, dropna=False).agg(**agg).reset_index()
    out["selection"] = SELECTION
    return out


def _mean_std_column(table: pd.DataFrame, c: str) -> list[str]:
    """``mean ± std`` over models (accuracies in %); just the mean where one model gives no std."""
    scale, digits = (100.0, 1) if c.startswith("acc") else (1.0, 1 if c != "seconds" else 2)
    std = table.get(f"{c}_std", pd.Series(float("nan"), index=table.index))
    return [
        "" if pd.isna(m) else f"{m * scale:.{digits}f}" + ("" if pd.isna(sd) else f" ± {sd * scale:.{digits}f}")
        for m, sd in zip(table[c], std)
    ]


def to_markdown(table: pd.DataFrame) -> str:
    """A readable Markdown rendering (values rounded; standard deviations as ±)."""
    if table.empty:
        return "_no runs_\n"
    cols = ["paper_name", "family", "artifact", "n_layer", "epoch", "best_hp"]
    view = table[[c for c in cols if c in table.columns]].copy()
    for c in ["percent_mem_before", "percent_mem_after", "acc_before", "acc_after", "perplexity_before",
              "perplexity_after", "seconds"]:
        if c in table.columns:
            view[c] = _mean_std_column(table, c)
    view["n_models"] = table["n_models"]
    return view.to_markdown(index=False, disable_numparse=True) + f"\n\nSelection score: {SELECTION}. Accuracies in %.\n"


def training_summary(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """The last evaluated epoch of every training history, one row per model."""
    rows = []
    for p in paths:
        df = read_rows([p], required=("epoch", "percent_mem", "model"))
        rows.append(df.dropna(subset=["percent_mem"]).iloc[-1])
    return pd.DataFrame(rows).reset_index(drop=True)


_SHOWN = ["percent_mem_before", "percent_mem_after", "acc_before", "acc_after", "perplexity_before",
          "perplexity_after", "seconds"]
_SETTING = ["family", "artifact", "n_layer"]


def _last_evaluated(history: pd.DataFrame) -> pd.Series:
    return history.dropna(subset=["percent_mem"]).iloc[-1]


def _metric_pair(before: pd.Series, after: pd.Series) -> dict[str, float]:
    out = {}
    for m in ("percent_mem", "acc", "perplexity"):
        if m in before.index and pd.notna(before[m]):
            out[f"{m}_before"], out[f"{m}_after"] = float(before[m]), float(after[m])
    return out


def _aggregate(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    shown = [c for c in _SHOWN if c in rows.columns]
    agg = {**{c: (c, "mean") for c in shown}, **{f"{c}_std": (c, "std") for c in shown},
           "n_models": ("seed", "nunique")}
    return rows.groupby(keys, sort=True, dropna=False).agg(**agg).reset_index()


def mitigation_summary(histories: list[pd.DataFrame], finetunes: list[pd.DataFrame], unlearning: pd.DataFrame) -> pd.DataFrame:
    """All mitigation families in one table (paper Table 1 layout), means over model seeds.

    * regularizer: before = the plain model of the same data set and depth, after = the
      regularized model, both at their last label; seconds = training time of the regularized model;
    * finetune: before = epoch 0 (the base model), after = the last fine-tuning epoch; seconds =
      cumulative fine-tuning time (evaluation excluded);
    * unlearning: the best-run summary (:func:`summarize`); seconds = edit time.
    """
    last = {str(h["model"].iloc[0]): h for h in histories}
    base = {(h["data"].iloc[0], int(h["n_layer"].iloc[0])): _last_evaluated(h)
            for h in histories if h["objective"].iloc[0] == "none"}
    rows = []
    for h in histories:
        if h["objective"].iloc[0] == "none":
            continue
        after = _last_evaluated(h)
        before = base[(after["data"], int(after["n_layer"]))]
        rows.append({"category": "regularizer", "method": after["objective"], "hp": after["objective_hp"],
                     **{k: after[k] for k in _SETTING + ["seed"]}, **_metric_pair(before, after),
                     "seconds": float(after["seconds"])})
    for f in finetunes:
        ident = _last_evaluated(last[str(f["model"].iloc[0])])
        before, after = f.iloc[0], f.iloc[-1]
        rows.append({"category": "finetune", "method": f"finetune_{after['variant']}",
                     "hp": f"epochs={int(after['epoch'])}", **{k: ident[k] for k in _SETTING + ["seed"]},
                     **_metric_pair(before, after), "seconds": float(after["seconds"])})
    parts = []
    if rows:
        parts.append(_aggregate(pd.DataFrame(rows), ["category", "method", "hp", *_SETTING]))
    if not unlearning.empty:
        u = unlearning.rename(columns={"best_hp": "hp"}).assign(category="unlearning")
        parts.append(u[[c for c in parts[0].columns if c in u.columns] if parts else u.columns])
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def mitigation_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "_no runs_\n"
    view = table[["category", "method", "hp", *_SETTING]].copy()
    for c in _SHOWN:
        if c in table.columns and table[c].notna().any():
            view[c] = _mean_std_column(table, c)
    view["n_models"] = table["n_models"]
    return view.to_markdown(index=False, disable_numparse=True) + "\n\nAccuracies in %; memorization in % of counted artifact rows.\n"
