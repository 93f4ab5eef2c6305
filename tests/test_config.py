"""Config: schema, the quick/paper merge, registry ↔ schema agreement, grid ids."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

from tinymem.grid import base_models, cell_id, check_config, expand_grid, math_datasets, unlearn_cells
from tinymem.mitigations.unlearning import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "config" / "schema.yaml")


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _merged(overlay: str) -> dict:
    cfg = _load("config/config.yaml")
    update_config(cfg, _load(overlay))
    return cfg


@pytest.mark.parametrize("overlay", ["config/quick.yaml", "tests/config/tiny.yaml"])
def test_overlay_sets_every_key_it_inherits(overlay):
    """--configfile merges key by key: an overlay that omitted a key would silently run the
    paper's value (e.g. the paper's 90-cell grid). Ours restate everything, so the merge equals
    the overlay itself."""
    assert _merged(overlay) == _load(overlay)


@pytest.mark.parametrize("name", ["config/config.yaml", "config/quick.yaml", "tests/config/tiny.yaml"])
def test_configs_validate(name):
    cfg = _merged(name) if name != "config/config.yaml" else _load(name)
    validate(cfg, SCHEMA)
    check_config(cfg)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["math"].update(num_extrra=[3]), "num_extrra"),
        (lambda c: c["training"]["math_noise"].update(epochs="60"), "60"),
        (lambda c: c["unlearning"]["methods"].update(balanced_subnett={"ratio": [0.1]}), "balanced_subnett"),
        (lambda c: c["model"].update(layers=[]), "layers"),
    ],
)
def test_schema_errors_name_the_key(mutate, key):
    cfg = _load("config/config.yaml")
    mutate(cfg)
    with pytest.raises(Exception, match=key):
        validate(cfg, SCHEMA)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["training"]["math_noise"].update(unlearn_epochs=[501]), r"training.math_noise.unlearn_epochs"),
        # A grid that expands to nothing: an empty axis (the schema's minItems catches it too).
        (lambda c: c["unlearning"]["methods"]["balanced_subnet"].update(ratio=[]), r"unlearning.methods.balanced_subnet"),
        (lambda c: c["regularizers"]["methods"]["spectral_norm"].update(lam=[]), r"regularizers.methods.spectral_norm"),
        (lambda c: c["finetune"].update(layers=[3]), r"finetune.layers"),
        (lambda c: c["math"].update(num_noise=10**6), r"math.num_noise"),
        (lambda c: c["unlearning"]["exclude"].append({"method": "gready"}), r"unlearning.exclude\[3\].method"),
    ],
)
def test_semantic_checks_name_the_key(mutate, key):
    cfg = _load("config/config.yaml")
    mutate(cfg)
    with pytest.raises(ValueError, match=key):
        check_config(cfg)


def test_schema_methods_match_registry():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    methods = schema["properties"]["unlearning"]["properties"]["methods"]
    assert set(methods["propertyNames"]["enum"]) == set(REGISTRY)
    assert set(methods["properties"]) == set(REGISTRY)
    for name, spec in methods["properties"].items():
        fields = {f.name for f in dataclasses.fields(REGISTRY[name].config_cls)}
        assert set(spec["properties"]) <= fields, name
        assert set(spec["required"]) <= set(spec["properties"]), name


def test_every_registered_method_runs_in_quick():
    assert set(_merged("config/quick.yaml")["unlearning"]["methods"]) == set(REGISTRY)


def test_every_config_roundtrips():
    for method in REGISTRY.values():
        cfg = method.config_cls()
        assert method.config_cls(**dataclasses.asdict(cfg)) == cfg


def test_grid_ids_are_canonical():
    assert cell_id({"ratio": 0.10, "epochs": 5}) == cell_id({"epochs": 5, "ratio": 1e-1}) == "epochs=5,ratio=0.1"
    cells = expand_grid({"ratio": [0.1, 0.3], "epochs": [1, 10, 20]})
    assert len(cells) == 6 and "epochs=10,ratio=0.3" in cells


def test_paper_grid_size():
    cfg = _load("config/config.yaml")
    assert len(math_datasets(cfg)) == 2 * 2 * 3 * 3  # families × artifacts × num_extra × seeds
    assert len(base_models(cfg)) == 144 + 24  # math × layers {2, 4, 8, 16} + language 2 artifacts × 3 seeds × 4 layers: 168 (§9.1)
    paper = copy.deepcopy(cfg)
    assert len(expand_grid(paper["unlearning"]["methods"]["balanced_subnet"])) == 90  # B.8


def test_paper_unlearning_cells_follow_upstream_filters():
    """Per checkpoint (unlearning.md B.8): IG is skipped on 16-layer models, Greedy at ratio 0.05 on
    16-layer and language models; everything else runs everywhere."""
    cfg = _load("config/config.yaml")
    full = {m: len(expand_grid(axes)) for m, axes in cfg["unlearning"]["methods"].items()}
    seen = set()
    for model in base_models(cfg):
        counts = {m: len(cells) for m, cells in unlearn_cells(cfg, model).items()}
        deep, lang = model.n_layer >= 16, model.data.kind == "language"
        expected = dict(full, integrated_gradients=0 if deep else full["integrated_gradients"],
                        greedy=full["greedy"] - (deep or lang))
        assert counts == expected, model.id
        greedy = unlearn_cells(cfg, model)["greedy"]
        assert all(p["ratio"] < 0.05 for p in greedy.values()) == (deep or lang)
        seen.add((deep, lang))
    assert seen == {(False, False), (True, False), (False, True), (True, True)}
    assert full["integrated_gradients"] == 3 and full["greedy"] == 5
