"""Training: checkpoints, exact resume after a kill, clear errors on bad checkpoints."""

from __future__ import annotations

import pytest
import torch

from tinymem.checkpoints import load_model, load_optimizer_state
from tinymem.data.math import MathDataConfig, build_math_data
from tinymem.io import CorruptFileError
from tinymem.models import ModelConfig
from tinymem.training import Preempted, TrainConfig, latest_state, train

DATA = MathDataConfig(num_7=80, num_extra=30, num_test=10, num_noise=10, max_ctx=100)
CFG = TrainConfig(epochs=3, checkpoint_every=2, batch_size=16, seed=0, export_epochs=(2,))


@pytest.fixture(scope="module")
def small():
    data = build_math_data(DATA)
    return data, ModelConfig.for_data(data.tokens, data.max_ctx, n_layer=1, n_embd=32)


def _weights(path):
    model, _, _ = load_model(path)
    return model.state_dict()


def test_labels_and_exports(small, tmp_path):
    data, arch = small
    assert CFG.checkpoint_labels() == [0, 2, 3]
    hist = train(arch, CFG, data, tmp_path / "r", tmp_path / "o", progress=False, labels={"model": "m"})
    assert hist["epoch"].tolist() == [0, 1, 2, 3]  # E + 1 passes (Q12)
    assert hist["percent_mem"].notna().tolist() == [True, False, True, True]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["epoch2.pt", "epoch3.pt"]
    model, cfg, meta = load_model(tmp_path / "o" / "epoch3.pt")
    assert cfg == arch and meta["epoch"] == 3 and "git_hash" in meta
    assert meta["metrics"]["percent_mem"] == hist.iloc[-1]["percent_mem"]
    assert load_optimizer_state(tmp_path / "o" / "epoch3.pt")["state"]
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]


def test_killed_run_resumes_to_identical_weights(small, tmp_path):
    data, arch = small
    train(arch, CFG, data, tmp_path / "ref_r", tmp_path / "ref_o", progress=False)

    steps = {"n": 0}

    def stop_after_13_steps():
        steps["n"] += 1
        return steps["n"] == 13  # mid-epoch 1: 150 rows at batch 16 = 10 steps per epoch

    with pytest.raises(Preempted):
        train(arch, CFG, data, tmp_path / "r", tmp_path / "o", stop=stop_after_13_steps, progress=False)
    state = latest_state(tmp_path / "r")
    assert state is not None and state.name == "state_e000001_s0000003.pt"
    assert not (tmp_path / "o" / "epoch3.pt").exists()
    hist = train(arch, CFG, data, tmp_path / "r", tmp_path / "o", progress=False)
    for name in ("epoch2.pt", "epoch3.pt"):
        ref, got = _weights(tmp_path / "ref_o" / name), _weights(tmp_path / "o" / name)
        assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert len(hist) == 4


def test_corrupt_state_and_model_files_are_named(small, tmp_path):
    data, arch = small
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "state_e000001_s0000000.pt").write_bytes(b"not a zip")
    with pytest.raises(CorruptFileError, match="state_e000001_s0000000.pt"):
        train(arch, CFG, data, tmp_path / "r", tmp_path / "o", progress=False)
    (tmp_path / "m.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CorruptFileError, match="m.pt"):
        load_model(tmp_path / "m.pt")


def test_architecture_mismatch_on_resume(small, tmp_path):
    data, arch = small
    short = TrainConfig(epochs=0, checkpoint_every=1, batch_size=16)
    train(arch, short, data, tmp_path / "r", tmp_path / "o", progress=False)
    other = ModelConfig.for_data(data.tokens, data.max_ctx, n_layer=2, n_embd=32)
    with pytest.raises(ValueError, match="was written for"):
        train(other, TrainConfig(epochs=1, checkpoint_every=1, batch_size=16), data, tmp_path / "r", tmp_path / "o2", progress=False)
    with pytest.raises(ValueError, match="architecture"):
        load_model(tmp_path / "o" / "epoch0.pt", expect=other)


def test_export_epochs_must_be_labels():
    with pytest.raises(ValueError, match="not checkpoint labels"):
        TrainConfig(epochs=10, checkpoint_every=5, export_epochs=(3,))
