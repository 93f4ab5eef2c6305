"""Fine-tuning mitigations (training.md §8): data variants, loss reduction, exact resume."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from tinymem.checkpoints import load_model, load_optimizer_state
from tinymem.data.core import TinyMemData
from tinymem.metrics import evaluate, per_row_loss, trim
from tinymem.mitigations.finetune import (
    FinetuneConfig,
    artifact_example_ids,
    finetune,
    finetune_example_ids,
    finetune_rows,
)
from tinymem.mitigations.regularizers import apply_eval_hooks_from_meta, installed_masks, make_objective
from tinymem.training import Preempted


def small_data(data: TinyMemData, n_art: int = 8, n_clean: int = 40, n_test: int = 8, k: int = 12) -> TinyMemData:
    """A cut of the tiny data set that keeps fine-tuning and evaluation to a few seconds."""
    idx = torch.cat([torch.arange(n_art), data.retain_index[:n_clean]])
    art = data.artifact_train.subset(torch.arange(n_art))
    return dataclasses.replace(
        data, train=data.train[idx], train_example_id=data.train_example_id[idx],
        retain_index=torch.arange(n_art, n_art + n_clean), artifact_train=art, artifact_eval=art,
        tests={name: rows[:n_test] for name, rows in data.tests.items()}, k=k)


def mean_loss(model: torch.nn.Module, rows: torch.Tensor, pad_id: int) -> float:
    model.eval()
    with torch.no_grad():
        rows = trim(rows, pad_id)
        return float(per_row_loss(model(input_ids=rows).logits, rows, pad_id).mean())


def opt_steps(state: dict) -> int:
    return int(next(iter(state["state"].values()))["step"])


def test_variant_rows_and_ids(tiny_data: TinyMemData) -> None:
    clean, extra = tiny_data.artifact_train.clean, tiny_data.retain_rows()
    assert torch.equal(finetune_rows(tiny_data, "clean"), clean)
    assert torch.equal(finetune_rows(tiny_data, "extra"), extra)
    assert torch.equal(finetune_rows(tiny_data, "both"), torch.cat([extra, clean]))
    n_noise = len(tiny_data.artifact_train)
    assert torch.equal(artifact_example_ids(tiny_data), tiny_data.train_example_id[:n_noise])
    for v in ("clean", "extra", "both"):
        assert len(finetune_example_ids(tiny_data, v)) == len(finetune_rows(tiny_data, v))
    with pytest.raises(ValueError, match="variant"):
        FinetuneConfig(variant="noise")


@pytest.mark.parametrize("variant", ["clean", "extra", "both"])
def test_each_variant_lowers_the_loss_on_its_rows(tmp_path: Path, tiny_data: TinyMemData, tiny_model_path: Path,
                                                  variant: str) -> None:
    data = small_data(tiny_data)
    pad = data.tokens.pad_id
    cfg = FinetuneConfig(variant=variant, epochs=2, batch_size=16, eval_batch_size=64)
    hist = finetune(tiny_model_path, data, cfg, tmp_path / "resume", progress=False, out_path=tmp_path / "ft.pt")
    rows = finetune_rows(data, variant)
    before, _, _ = load_model(tiny_model_path)
    after, _, meta = load_model(tmp_path / "ft.pt")
    assert mean_loss(after, rows, pad) < mean_loss(before, rows, pad)

    assert list(hist.epoch) == [0, 1, 2] and math.isnan(hist.train_loss.iloc[0])
    assert hist.epoch_seconds.iloc[0] == 0 and bool((hist.epoch_seconds.iloc[1:] > 0).all())
    assert hist.seconds.tolist() == pytest.approx(hist.epoch_seconds.cumsum().tolist())
    assert set(hist.variant) == {variant} and "percent_mem" in hist and "acc" in hist
    assert hist.acc.iloc[0] == pytest.approx(evaluate(before, data, 64)["acc"])
    # The same AdamW continues: its step count carries on from the base model's.
    steps = math.ceil(len(rows) / cfg.batch_size) * cfg.epochs
    assert opt_steps(load_optimizer_state(tmp_path / "ft.pt")) == opt_steps(load_optimizer_state(tiny_model_path)) + steps
    assert meta["base_epoch"] == hist.base_epoch.iloc[0] and meta["finetune_config"]["variant"] == variant


class StopAfter:
    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls == self.n


def test_resumed_finetune_equals_uninterrupted(tmp_path: Path, tiny_data: TinyMemData, tiny_model_path: Path) -> None:
    data = small_data(tiny_data)
    cfg = FinetuneConfig(variant="both", epochs=2, batch_size=16, eval_batch_size=64)  # 3 steps per epoch
    full = finetune(tiny_model_path, data, cfg, tmp_path / "a", progress=False, out_path=tmp_path / "a.pt")
    with pytest.raises(Preempted):
        finetune(tiny_model_path, data, cfg, tmp_path / "b", progress=False, stop=StopAfter(4))
    resumed = finetune(tiny_model_path, data, cfg, tmp_path / "b", progress=False, out_path=tmp_path / "b.pt")
    a, _, _ = load_model(tmp_path / "a.pt")
    b, _, _ = load_model(tmp_path / "b.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    timing = ["epoch_seconds", "seconds"]
    assert full.drop(columns=timing).equals(resumed.drop(columns=timing))
    # A finished run is not redone: a rerun returns the recorded history.
    again = finetune(tiny_model_path, data, cfg, tmp_path / "b", progress=False)
    assert again.equals(resumed)
    with pytest.raises(ValueError, match="delete"):
        finetune(tiny_model_path, data, dataclasses.replace(cfg, lr=2e-3), tmp_path / "b", progress=False)


def test_finetune_with_example_tied_dropout(tmp_path: Path, tiny_data: TinyMemData, tiny_model_path: Path) -> None:
    data = small_data(tiny_data)
    cfg = FinetuneConfig(variant="clean", epochs=1, batch_size=16, eval_batch_size=64)
    obj = make_objective("example_tied_dropout", {"p_fixed": 0.5, "p_mem": 0.1}, data.tokens.pad_id)
    hist = finetune(tiny_model_path, data, cfg, tmp_path / "r", progress=False, objective=obj,
                    out_path=tmp_path / "ft.pt")
    assert set(hist.objective) == {"example_tied_dropout"}
    model, _, meta = load_model(tmp_path / "ft.pt")
    assert meta["objective"] == "example_tied_dropout"
    apply_eval_hooks_from_meta(model, meta)
    assert installed_masks(model) is not None
    assert evaluate(model, data, 64)["acc"] == pytest.approx(hist.acc.iloc[-1])
