"""The unlearning job body (tinymem.mitigations.unlearning.runner.run_grids): several methods'
grids on one checkpoint, one table per method, every (cell, seed) cached for restarts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tinymem.mitigations.unlearning.runner import run_grids

GRIDS = {
    "random_mask": {"ratio=0.05": {"ratio": 0.05}, "ratio=0.2": {"ratio": 0.2}},
    "balanced_subnet": {"epochs=3,ratio=0.1": {"ratio": 0.1, "epochs": 3, "loss_weighting": 0.5}},
}


def test_grids_tables_and_cache(tiny_model_path: Path, tiny_data, tmp_path: Path):
    kw = dict(batch_size=64, labels={"model": "tiny"}, progress=False)
    tables = run_grids(tiny_model_path, tiny_data, GRIDS, [0, 1], tmp_path / "cache", **kw)
    assert set(tables) == set(GRIDS)
    for method, table in tables.items():
        assert len(table) == len(GRIDS[method]) * 2  # cells × seeds
        assert set(table.method) == {method} and set(table.model) == {"tiny"}
        assert (table.status == "ok").all()
        assert (table.percent_mem_before > 0).all() and table.percent_mem_before.nunique() == 1
        assert table.frac_changed.tolist() == pytest.approx(table.param_ratio.tolist(), abs=1e-3)
    bs = tables["balanced_subnet"]
    assert (bs.percent_mem_after < bs.percent_mem_before).all()
    cached = sorted(p.relative_to(tmp_path / "cache").as_posix() for p in (tmp_path / "cache").rglob("*.json"))
    assert cached == ["balanced_subnet/epochs=3,ratio=0.1__seed0.json", "balanced_subnet/epochs=3,ratio=0.1__seed1.json",
                      "random_mask/ratio=0.05__seed0.json", "random_mask/ratio=0.05__seed1.json",
                      "random_mask/ratio=0.2__seed0.json", "random_mask/ratio=0.2__seed1.json"]

    # A restart takes finished cells from the cache: the same rows, measured seconds included.
    again = run_grids(tiny_model_path, tiny_data, GRIDS, [0, 1], tmp_path / "cache", **kw)
    for method in GRIDS:
        pd.testing.assert_frame_equal(again[method], tables[method])

    # Another checkpoint (other bytes) does not reuse them.
    other = tmp_path / "other.pt"
    shutil.copy(tiny_model_path, other)
    with open(other, "ab") as f:
        f.write(b"\0")  # still loadable (zip archives tolerate trailing bytes), different digest
    fresh = run_grids(other, tiny_data, {"balanced_subnet": GRIDS["balanced_subnet"]}, [0], tmp_path / "cache", **kw)
    assert fresh["balanced_subnet"].seconds.iloc[0] != tables["balanced_subnet"].seconds.iloc[0]


def test_bad_cell_fails_before_any_work(tiny_model_path: Path, tiny_data, tmp_path: Path):
    bad = {"random_mask": {"ratio=0.05": {"ratio": 0.05}}, "balanced_subnet": {"x": {"ratio": 0.1, "epochz": 3}}}
    with pytest.raises((TypeError, ValueError), match="epochz"):
        run_grids(tiny_model_path, tiny_data, bad, [0], tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def test_method_with_no_cells_gives_a_header_only_table(tiny_model_path: Path, tiny_data, tmp_path: Path):
    """A method that unlearning.exclude removes on a checkpoint still writes its CSV, which the
    tables read as no runs."""
    from tinymem.io import write_csv
    from tinymem.tables import read_rows

    grids = {"random_mask": {"ratio=0.05": {"ratio": 0.05}}, "integrated_gradients": {}}
    tables = run_grids(tiny_model_path, tiny_data, grids, [0], tmp_path / "cache", labels={"model": "tiny"},
                       progress=False)
    assert tables["integrated_gradients"].empty
    for method, table in tables.items():
        write_csv(table, tmp_path / f"{method}.csv")
    rows = read_rows([tmp_path / "random_mask.csv", tmp_path / "integrated_gradients.csv"])
    assert rows.method.tolist() == ["random_mask"]
