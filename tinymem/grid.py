"""Expansion of the config into the workflow's units: data sets, models and unlearning grids.

Pure Python with no torch import, so ``rules/common.smk`` can call it at DAG-build time (every
SLURM job re-parses the Snakefile) and tests can check it without Snakemake. Identifiers are
canonical: the same hyperparameters always give the same id, whatever the YAML spelling.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any


def fmt(value: Any) -> str:
    """Canonical spelling of a grid value (``0.10`` and ``1e-1`` both give ``0.1``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def cell_id(params: dict[str, Any]) -> str:
    """``epochs=10,loss_weighting=0.9,ratio=0.1``: keys sorted, values canonical."""
    return ",".join(f"{k}={fmt(params[k])}" for k in sorted(params)) or "default"


def expand_grid(axes: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """Cartesian product of per-key value lists → ``{cell_id: params}`` in a stable order."""
    keys = sorted(axes)
    cells: dict[str, dict[str, Any]] = {}
    for values in itertools.product(*(axes[k] for k in keys)):
        params = dict(zip(keys, values))
        cells[cell_id(params)] = params
    return cells


@dataclass(frozen=True)
class DataSpec:
    id: str
    kind: str  # "math" or "language"
    family: str  # increment | mult | language corpus name
    artifact: str  # noise | backdoor
    seed: int
    num_extra: int | None

    @property
    def task(self) -> str:
        """Training-settings key: ``math_noise``, ``math_backdoor``, ``language_noise``, …"""
        return f"{self.kind}_{self.artifact}"


@dataclass(frozen=True)
class ModelSpec:
    id: str
    data: DataSpec
    n_layer: int
    objective: str = "none"  # a regularizer name, or "none"
    objective_params: tuple[tuple[str, Any], ...] = ()


def math_datasets(config: dict[str, Any]) -> list[DataSpec]:
    m = config["math"]
    return [
        DataSpec(f"{fam}-{art}-x{n}-s{seed}", "math", fam, art, seed, n)
        for fam in m["families"]
        for art in m["artifacts"]
        for n in m["num_extra"]
        for seed in config["seeds"]
    ]


def language_datasets(config: dict[str, Any]) -> list[DataSpec]:
    """Language data sets (family ``language``): one per artifact and seed; none when disabled."""
    lang = config["language"]
    if not lang["enabled"]:
        return []
    return [DataSpec(f"language-{art}-s{seed}", "language", "language", art, seed, None)
            for art in lang["artifacts"] for seed in config["seeds"]]


def datasets(config: dict[str, Any]) -> list[DataSpec]:
    return math_datasets(config) + language_datasets(config)


def base_models(config: dict[str, Any]) -> list[ModelSpec]:
    """Every (data set × layer count) model trained without a regularizer."""
    return [ModelSpec(f"{d.id}-L{n}", d, n) for d in datasets(config) for n in config["model"]["layers"]]


def _selected(data: DataSpec, selection: dict[str, Any]) -> bool:
    """Math data sets match on family and num_extra; language data sets on the family alone."""
    if data.family not in selection["families"]:
        return False
    return data.kind == "language" or data.num_extra in selection["num_extra"]


def regularized_models(config: dict[str, Any]) -> list[ModelSpec]:
    """Models trained with a regularizer: selected data sets × layers × each regularizer's grid.

    Id: ``<data>-L<layers>-<regularizer>-<cell id>``, e.g. ``mult-noise-x3000-s0-L4-spectral_norm-lam=0.01``.
    """
    r = config["regularizers"]
    return [
        ModelSpec(f"{d.id}-L{n}-{name}-{cid}", d, n, name, tuple(sorted(params.items())))
        for d in datasets(config)
        if _selected(d, r) and d.artifact in r["artifacts"]
        for n in r["layers"]
        for name, axes in r["methods"].items()
        for cid, params in expand_grid(axes).items()
    ]


def all_models(config: dict[str, Any]) -> list[ModelSpec]:
    return base_models(config) + regularized_models(config)


def finetune_models(config: dict[str, Any]) -> list[ModelSpec]:
    """Base models that the fine-tuning mitigations start from (their last label)."""
    f = config["finetune"]
    return [m for m in base_models(config) if _selected(m.data, f) and m.n_layer in f["layers"]]


def unlearn_cells(config: dict[str, Any], model: ModelSpec) -> dict[str, dict[str, dict[str, Any]]]:
    """Each unlearning method's grid cells on one model's checkpoints, after ``unlearning.exclude``.

    An exclude rule drops cells of its ``method`` on models with at least ``min_layers`` layers
    and/or of a data kind in ``kinds``; with ``min_ratio``, only the cells whose ratio is at least
    that. The paper config states upstream's filters this way (unlearning.md B.8): no IG on 16-layer
    models, no Greedy at ratio >= 0.05 on 16-layer or language models.
    """
    out = {}
    for method, axes in config["unlearning"]["methods"].items():
        cells = expand_grid(axes)
        for rule in config["unlearning"].get("exclude", []):
            if rule["method"] != method or model.n_layer < rule.get("min_layers", 0):
                continue
            if "kinds" in rule and model.data.kind not in rule["kinds"]:
                continue
            floor = rule.get("min_ratio")
            cells = {hp: p for hp, p in cells.items() if floor is not None and p.get("ratio", float("inf")) < floor}
        out[method] = cells
    return out


def checkpoint_labels(epochs: int, every: int) -> list[int]:
    """Epoch labels 0, every, 2·every, …, and the last label ``epochs`` (Q12)."""
    labels = list(range(0, epochs + 1, every))
    if labels[-1] != epochs:
        labels.append(epochs)
    return labels


def check_config(config: dict[str, Any]) -> None:
    """Semantic checks the JSON schema cannot express; each error names the key."""
    lang = config["language"]
    if lang["enabled"] and lang["prompt_len"] + lang["k"] > lang["max_ctx"]:
        raise ValueError(f"language.prompt_len + language.k = {lang['prompt_len'] + lang['k']} exceeds language.max_ctx = {lang['max_ctx']}")
    if lang["enabled"] and lang["corpus"] == "local" and not lang["corpus_files"]:
        raise ValueError("language.corpus_files: corpus 'local' needs at least one text file")
    for task, t in config["training"].items():
        if not isinstance(t, dict):
            continue  # switches such as pad_in_loss
        labels = set(checkpoint_labels(t["epochs"], t["checkpoint_every"]))
        bad = [e for e in t["unlearn_epochs"] if e not in labels]
        if bad:
            raise ValueError(
                f"training.{task}.unlearn_epochs: {bad} are not checkpoint labels "
                f"(epochs {t['epochs']}, checkpoint_every {t['checkpoint_every']})"
            )
    m = config["math"]
    if m["prompt_len"] + m["k"] > m["max_ctx"]:
        raise ValueError(f"math.prompt_len + math.k = {m['prompt_len'] + m['k']} exceeds math.max_ctx = {m['max_ctx']}")
    if m["num_noise"] > m["num_7"] - m["num_test"]:
        raise ValueError(f"math.num_noise = {m['num_noise']} exceeds the {m['num_7'] - m['num_test']} c=7 train rows")
    for block in ("regularizers", "finetune"):
        sel = config[block]
        families = m["families"] + (["language"] if config["language"]["enabled"] else [])
        for key, universe in (("families", families), ("num_extra", m["num_extra"]), ("layers", config["model"]["layers"])):
            outside = sorted(set(sel[key]) - set(universe))
            if outside:
                # Each selected model needs its data set and its unregularized baseline in the grid.
                raise ValueError(f"{block}.{key}: {outside} are not in the trained grid ({universe})")
    if not finetune_models(config):
        raise ValueError("finetune: the selection (families, num_extra, layers) expands to no model")
    for method, axes in config["regularizers"]["methods"].items():
        empty = [k for k, v in axes.items() if isinstance(v, list) and not v]
        if empty:
            raise ValueError(f"regularizers.methods.{method}: {empty} expand to no grid cell")
    for i, rule in enumerate(config["unlearning"].get("exclude", [])):
        if rule["method"] not in config["unlearning"]["methods"]:
            raise ValueError(f"unlearning.exclude[{i}].method: {rule['method']!r} is not a method of unlearning.methods")
    for method, axes in config["unlearning"]["methods"].items():
        empty = [k for k, v in axes.items() if isinstance(v, list) and not v]
        if empty:
            raise ValueError(f"unlearning.methods.{method}: {empty} expand to no grid cell")
