# Config validation, the expanded grid and every input function. No rules here.
import re

from snakemake.utils import validate

from tinymem.grid import all_models, base_models, check_config, datasets, finetune_models, unlearn_cells


validate(config, schema="../config/schema.yaml")
check_config(config)

RUN = config["run"]
DATASETS = {d.id: d for d in datasets(config)}
MATH_DATA = [d for d in DATASETS if DATASETS[d].kind == "math"]
LANGUAGE_DATA = [d for d in DATASETS if DATASETS[d].kind == "language"]
# Table names use a short kind: tables/math_*.csv, tables/lang_*.csv.
KINDS = {"math": "math", "lang": "language"}
MODELS = {m.id: m for m in all_models(config)}
BASE_MODELS = base_models(config)
REGULARIZED_MODELS = [m for m in MODELS.values() if m.objective != "none"]
FINETUNE_MODELS = finetune_models(config)
UNLEARN_METHODS = list(config["unlearning"]["methods"])
# Each base model's unlearning cells (after unlearning.exclude), computed once, not per job.
UNLEARN_CELLS = {m.id: unlearn_cells(config, m) for m in BASE_MODELS}


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"  # (?!) never matches


# Structural patterns, not lists of every id: a pattern that spells out hundreds of ids makes
# every wildcard substitution scan it, and DAG building slows several-fold (bench/dag_build.py).
# Input functions look ids up in DATASETS/MODELS, so an id outside the grid still fails at once.
wildcard_constraints:
    run=re.escape(RUN),
    data=r"[a-z]+-(?:noise|backdoor)(?:-x\d+)?-s\d+",
    model=r"[a-z]+-(?:noise|backdoor)(?:-x\d+)?-s\d+-L\d+(?:-[a-z_]+-[^/]+)?",
    epoch=r"\d+",
    variant="clean|extra|both",
    kind="math|lang",


def get_runtime(rule):
    """The rule's runtime (minutes, config `resources`), growing with each retry (attempt 1, 2, ...)."""
    minutes = config["resources"][rule]["runtime"]

    def runtime(wildcards, attempt):
        return minutes * attempt

    return runtime


def get_mem_mb(rule):
    return config["resources"][rule]["mem_mb"]


def get_math_data_params(wildcards):
    """The generating config of one math data set, as MathDataConfig keywords."""
    d = DATASETS[wildcards.data]
    m = config["math"]
    keys = ["num_7", "num_test", "num_noise", "length", "max_ctx", "prompt_len", "k", "noise_p",
            "trigger_offset", "backdoor_test_fraction", "backdoor_token"]
    return {"family": d.family, "artifact": d.artifact, "seed": d.seed, "num_extra": d.num_extra,
            **{k: m[k] for k in keys}}


def get_language_data_params(wildcards):
    """LanguageDataConfig keywords of one language data set."""
    d = DATASETS[wildcards.data]
    lang = {k: v for k, v in config["language"].items() if k not in ("enabled", "artifacts", "retain_size")}
    return {**lang, "artifact": d.artifact, "seed": d.seed}


def get_model_data(wildcards):
    return f"results/{wildcards.run}/data/{MODELS[wildcards.model].data.id}.pt"


def get_model_arch(wildcards):
    m = config["model"]
    return {"n_layer": MODELS[wildcards.model].n_layer, "n_embd": m["n_embd"], "n_head": m["n_head"]}


def get_train_params(wildcards):
    """TrainConfig keywords of one model: its task's settings, its seed and exported labels."""
    spec = MODELS[wildcards.model]
    task = config["training"][spec.data.task]
    return {"epochs": task["epochs"], "checkpoint_every": task["checkpoint_every"],
            "batch_size": task["batch_size"], "lr": task["lr"], "weight_decay": task["weight_decay"],
            "seed": spec.data.seed, "pad_in_loss": config["training"]["pad_in_loss"],
            "export_epochs": sorted(task["unlearn_epochs"])}


def get_objective(wildcards):
    """The training objective of one model: a regularizer name and its parameters, or "none"."""
    spec = MODELS[wildcards.model]
    params = dict(spec.objective_params)
    if spec.objective in ("spectral_norm", "example_tied_dropout"):
        params["seed"] = spec.data.seed  # the regularizer's own randomness follows the model seed
    return {"name": spec.objective, "params": params}


def get_model_labels(wildcards):
    """Identifying columns written into the model's history."""
    spec = MODELS[wildcards.model]
    return {"model": spec.id, "data": spec.data.id, "num_extra": spec.data.num_extra,
            "objective_hp": ",".join(f"{k}={v}" for k, v in spec.objective_params) or "none"}


def get_last_label(wildcards):
    return config["training"][MODELS[wildcards.model].data.task]["epochs"]


def get_finetune_params(wildcards):
    f = config["finetune"]
    return {"variant": wildcards.variant, "epochs": f["epochs"], "batch_size": f["batch_size"], "lr": f["lr"],
            "weight_decay": f["weight_decay"], "seed": MODELS[wildcards.model].data.seed,
            "pad_in_loss": config["training"]["pad_in_loss"]}


def get_unlearn_params(wildcards):
    u = config["unlearning"]
    kind = MODELS[wildcards.model].data.kind
    retain_size = config["language"]["retain_size"] if kind == "language" else u["retain_size"]
    cells = UNLEARN_CELLS.get(wildcards.model) or unlearn_cells(config, MODELS[wildcards.model])
    return {"cells": cells, "seeds": u["seeds"], "batch_size": u["batch_size"],
            "retain_size": retain_size, "retain_includes_noise": u["retain_includes_noise"]}


def get_unlearn_results(wildcards):
    """Every unlearning CSV of one data kind (wildcard kind: "math" or "lang")."""
    kind = KINDS[wildcards.kind]
    return [
        f"results/{RUN}/unlearn/{m.id}/epoch{e}/{method}.csv"
        for m in BASE_MODELS
        if m.data.kind == kind
        for e in config["training"][m.data.task]["unlearn_epochs"]
        for method in UNLEARN_METHODS
    ]


def get_histories(wildcards):
    kind = KINDS[wildcards.kind]
    return [f"results/{RUN}/models/{m.id}/history.csv" for m in MODELS.values() if m.data.kind == kind]


def get_finetune_results(wildcards):
    kind = KINDS[wildcards.kind]
    return [
        f"results/{RUN}/finetune/{m.id}/{variant}.csv"
        for m in FINETUNE_MODELS
        if m.data.kind == kind
        for variant in config["finetune"]["variants"]
    ]


def get_final_output():
    """The tables of every data kind in the grid."""
    present = [short for short, kind in KINDS.items() if any(d.kind == kind for d in DATASETS.values())]
    return [f"results/{RUN}/tables/{k}_{table}.csv" for k in present for table in ("training", "unlearning", "mitigations")]
