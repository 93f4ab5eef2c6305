"""Train-time regularizers: spectral norm, loss truncation, example-tied dropout (training.md §7)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tinymem.checkpoints import load_model
from tinymem.data.core import TinyMemData
from tinymem.metrics import evaluate, per_row_loss
from tinymem.mitigations.regularizers import (
    ExampleTiedDropoutConfig,
    LossDropper,
    LossTruncationConfig,
    LossTruncationObjective,
    SpectralNormConfig,
    SpectralNormObjective,
    TiedDropoutMasks,
    _blocks,
    apply_eval_hooks,
    installed_masks,
    make_objective,
    objective_params,
    remove_hooks,
    spectral_matrices,
)
from tinymem.models import ModelConfig, build_model
from tinymem.training import Preempted, TrainConfig, train

PAD = 13


def small_data(data: TinyMemData, n_art: int = 8, n_clean: int = 40, n_test: int = 8, k: int = 12) -> TinyMemData:
    """A cut of the tiny data set that keeps training and evaluation to a few seconds."""
    n_noise = len(data.artifact_train)
    idx = torch.cat([torch.arange(n_art), data.retain_index[:n_clean]])
    assert bool((data.retain_index >= n_noise).all())
    art = data.artifact_train.subset(torch.arange(n_art))
    return dataclasses.replace(
        data, train=data.train[idx], train_example_id=data.train_example_id[idx],
        retain_index=torch.arange(n_art, n_art + n_clean), artifact_train=art, artifact_eval=art,
        tests={name: rows[:n_test] for name, rows in data.tests.items()}, k=k)


def small_model(n_embd: int = 32, seed: int = 0) -> torch.nn.Module:
    return build_model(ModelConfig(n_layer=2, n_embd=n_embd, n_head=4, n_positions=100), seed=seed)


def rows_batch(b: int = 6, t: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, 12, (b, t), generator=g)
    rows[0, -5:] = PAD  # one padded row: losses count real tokens only
    return rows


# ---------------------------------------------------------------------------- factory


def test_factory_names_and_unknown_keys() -> None:
    assert make_objective("spectral_norm", {"lam": 0.1}, PAD).config == SpectralNormConfig(lam=0.1)
    assert objective_params(make_objective("loss_truncation", {"dropc": 0.05}, PAD))["dropc"] == 0.05
    assert make_objective("none", {}, PAD).name == "none"
    with pytest.raises(ValueError, match="p_mask"):
        make_objective("example_tied_dropout", {"p_mask": 0.1}, PAD)
    with pytest.raises(KeyError, match="l1"):
        make_objective("l1", {}, PAD)
    with pytest.raises(ValueError, match="dropc"):
        LossTruncationConfig(dropc=1.0)
    with pytest.raises(ValueError, match="p_fixed"):
        ExampleTiedDropoutConfig(p_fixed=0.0)


# ---------------------------------------------------------------------------- spectral norm


def test_spectral_matrices_and_blocks() -> None:
    model = small_model()
    mats = dict(spectral_matrices(model))
    assert len(mats) == 4 * 2 and sum(mats.values()) == 18 * 2  # 12 + 4 + 1 + 1 terms per layer
    assert not any(s in name for name in mats for s in ("ln", "wte", "wpe", "bias", "lm_head"))
    w = dict(model.named_parameters())["transformer.h.0.attn.c_attn.weight"]
    blocks = _blocks(w, 12)
    for i, chunk in enumerate(w.chunk(12, dim=-1)):
        assert torch.equal(blocks[i], chunk)


def test_spectral_sigma_converges_and_penalty_is_half_lambda_sum() -> None:
    torch.manual_seed(0)
    model = small_model()
    lam = 0.1
    obj = SpectralNormObjective(SpectralNormConfig(lam=lam), PAD)
    obj.prepare(model)
    params = dict(model.named_parameters())
    rng_before = torch.get_rng_state()
    with torch.no_grad():
        for _ in range(300):
            obj.sigmas(model)
    assert torch.equal(rng_before, torch.get_rng_state())  # never touches the global RNG
    exact_total = 0.0
    for name, n in spectral_matrices(model):
        with torch.no_grad():
            est = obj.sigmas(model, update=False)[name]
        exact = torch.linalg.matrix_norm(_blocks(params[name].detach(), n), ord=2)
        assert torch.allclose(est, exact, rtol=1e-4), name
        exact_total += float(exact.sum())

    rows = rows_batch()
    u_before = {k: v.clone() for k, v in obj.u.items()}
    loss, logs = obj.loss(model, rows, torch.arange(len(rows)))
    with torch.no_grad():
        logits = model(input_ids=rows).logits
    ce = float(torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1),
        torch.where(rows[:, 1:] == PAD, -100, rows[:, 1:]).flatten(), ignore_index=-100))
    assert float(loss.detach()) == pytest.approx(ce + lam / 2 * exact_total, rel=1e-5)
    assert logs["spectral_penalty"] == pytest.approx(lam / 2 * exact_total, rel=1e-5)
    assert any(not torch.equal(u_before[k], obj.u[k]) for k in obj.u)  # u advanced one step

    # Gradient of σ for a one-block matrix is u vᵀ (σ = uᵀ W v with u, v held fixed).
    model.zero_grad()
    name = "transformer.h.0.mlp.c_fc.weight"
    w = params[name]
    u = obj.u[name].clone()
    sigma = obj.sigmas(model)[name].sum()
    sigma.backward()
    with torch.no_grad():
        v = torch.nn.functional.normalize(w.T @ u[0], dim=0)
        u1 = torch.nn.functional.normalize(w @ v, dim=0)
    assert torch.allclose(w.grad, torch.outer(u1, v), atol=1e-6)


def test_spectral_state_round_trip() -> None:
    model = small_model()
    a = SpectralNormObjective(SpectralNormConfig(), PAD)
    a.prepare(model)
    a.sigmas(model)
    b = SpectralNormObjective(SpectralNormConfig(), PAD)
    b.prepare(model)
    b.load_state_dict(a.state_dict())
    for k in a.u:
        assert torch.equal(a.u[k], b.u[k])


# ---------------------------------------------------------------------------- loss truncation


def test_loss_dropper_follows_upstream_schedule() -> None:
    d = LossDropper(dropc=0.2, min_count=10, recompute=10)
    first = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert torch.equal(d(first), torch.ones(5))  # 5 seen < 10
    assert torch.equal(d(first + 5), torch.ones(5))  # 10 seen; 10 new is not > recompute: no cutoff yet
    assert d.percentile_val == 1e8
    batch = torch.tensor([0.5, 9.5, 100.0, 3.0, 50.0])
    mask = d(batch)  # 15 new > 10: cutoff = 80th percentile of the ring buffer (batch wrapped in)
    buf = np.array([0.5, 9.5, 100.0, 3.0, 50.0, 6.0, 7.0, 8.0, 9.0, 10.0], dtype=np.float32)
    assert d.percentile_val == pytest.approx(float(np.percentile(buf, 80)))
    assert torch.equal(mask, (batch < d.percentile_val).float())
    assert mask.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]  # the highest-loss rows are dropped

    e = LossDropper(dropc=0.2, min_count=10, recompute=10)
    e.load_state_dict(d.state_dict())
    nxt = torch.tensor([20.0, 1.0, 60.0])
    assert torch.equal(d(nxt), e(nxt))


def test_loss_truncation_reduction_is_batch_mean_of_masked_losses() -> None:
    obj = LossTruncationObjective(LossTruncationConfig(dropc=0.25, min_count=4, recompute=4), PAD)
    obj.reduce(torch.tensor([1.0, 2.0, 3.0, 4.0]))  # fills the buffer: no cutoff yet
    per_row = torch.tensor([1.0, 2.0, 3.0, 100.0])
    loss, mask = obj.reduce(per_row)  # cutoff = 75th percentile of [1, 2, 3, 100]
    assert mask.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert float(loss) == pytest.approx((1 + 2 + 3) / 4)  # not renormalised by the kept count (Q8)

    model = small_model()
    rows = rows_batch(8)
    obj2 = LossTruncationObjective(LossTruncationConfig(dropc=0.25, min_count=8, recompute=8), PAD)
    ids = torch.arange(8)
    obj2.loss(model, rows, ids)
    loss2, logs = obj2.loss(model, rows, ids)
    with torch.no_grad():
        per = per_row_loss(model(input_ids=rows).logits, rows, PAD)
    keep = (per < obj2.dropper.percentile_val).float()
    assert 0 < keep.sum() < 8 and logs["kept_fraction"] == float(keep.mean())
    assert float(loss2.detach()) == pytest.approx(float((per * keep).mean()), rel=1e-6)
    assert float(per[keep == 0].min()) >= float(per[keep == 1].max())


# ---------------------------------------------------------------------------- example-tied dropout


def test_tied_dropout_masks() -> None:
    cfg = ExampleTiedDropoutConfig(p_fixed=0.2, p_mem=0.1, seed=3)
    d = 128
    m = TiedDropoutMasks(cfg, d)
    n_fixed = int(0.2 * d)
    rng_before = torch.get_rng_state()
    ids = torch.arange(3000)
    masks = m.masks(ids)
    assert torch.equal(rng_before, torch.get_rng_state())  # Q3: the global RNG is untouched
    assert masks.shape == (3000, d) and bool((masks[:, :n_fixed] == 1).all())
    assert torch.equal(masks, TiedDropoutMasks(cfg, d).masks(ids))  # fixed per example, cache-free
    assert torch.equal(m.masks(torch.tensor([7, 7])), masks[[7, 7]])
    assert len({tuple(r.tolist()) for r in masks[:200]}) == 200  # different across examples
    assert not torch.equal(masks, TiedDropoutMasks(ExampleTiedDropoutConfig(seed=4), d).masks(ids))
    kept = float(masks.mean())
    assert kept == pytest.approx((n_fixed + (d - n_fixed) * 0.1) / d, abs=0.005)
    assert kept == pytest.approx(0.2 + 0.8 * 0.1, abs=0.01)
    # Q1: ids never seen before (after earlier batches) get their own non-zero masks.
    unseen = torch.tensor([10**9, 123457, 5])
    got = m.masks(unseen)
    assert bool((got.sum(1) >= n_fixed).all())
    assert torch.equal(got, TiedDropoutMasks(cfg, d).masks(unseen))


def _block_inputs(model: torch.nn.Module, rows: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    hooks = [b.register_forward_pre_hook(lambda mod, args, kw: seen.append(args[0].detach().clone()), with_kwargs=True)
             for b in model.transformer.h]
    try:
        model(input_ids=rows)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_tied_dropout_hooks_train_and_eval() -> None:
    cfg = ExampleTiedDropoutConfig(p_fixed=0.25, p_mem=0.5, seed=0)
    model = small_model(n_embd=32)
    rows = rows_batch(4)
    ids = torch.tensor([3, 11, 3, 40])
    plain = _block_inputs(model.eval(), rows)[0]  # embeddings: the same with or without hooks

    obj = make_objective("example_tied_dropout", cfg.__dict__, PAD)
    obj.prepare(model, None)
    masks = obj.masks.masks(ids)
    model.train()
    with obj.masks.batch(ids, "cpu"):
        inputs = _block_inputs(model, rows)
    assert torch.equal(inputs[0], plain * masks[:, None, :])
    assert torch.equal((inputs[1] != 0).all(1).float(), masks)  # the same mask in the next layer
    with pytest.raises(RuntimeError, match="example ids"):
        model(input_ids=rows)  # Q2: training mode needs ids
    loss, _ = obj.loss(model, rows, ids)
    assert math.isfinite(float(loss.detach()))

    model.eval()
    scale = torch.zeros(32)
    scale[:8] = (0.25 + 0.5) / 0.25
    assert torch.allclose(_block_inputs(model, rows)[0], plain * scale)  # eval: no ids needed

    remove_hooks(model)
    assert installed_masks(model) is None
    assert torch.equal(_block_inputs(model, rows)[0], plain)
    apply_eval_hooks(model, "example_tied_dropout", cfg.__dict__)
    for mode in (model.train(), model.eval()):  # the reloaded network is the eval-time one
        assert torch.allclose(_block_inputs(mode, rows)[0], plain * scale)
    apply_eval_hooks(model, "spectral_norm", {})
    assert torch.equal(_block_inputs(model, rows)[0], plain)


# ---------------------------------------------------------------------------- through train()


class StopAfter:
    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls == self.n


GRID = [
    ("spectral_norm", {"lam": 0.01}),
    ("loss_truncation", {"dropc": 0.1, "min_count": 32, "recompute": 32}),
    ("example_tied_dropout", {"p_fixed": 0.2, "p_mem": 0.1, "seed": 0}),
]


@pytest.mark.parametrize("name,params", GRID, ids=[g[0] for g in GRID])
def test_objective_trains_and_resumes_exactly(tmp_path: Path, tiny_data: TinyMemData, name: str, params: dict) -> None:
    data = small_data(tiny_data)
    mcfg = ModelConfig.for_data(data.tokens, data.max_ctx, n_layer=2, n_embd=32)
    tcfg = TrainConfig(epochs=2, checkpoint_every=2, batch_size=16, seed=0, eval_batch_size=64)
    pad = data.tokens.pad_id
    full = train(mcfg, tcfg, data, tmp_path / "a_resume", tmp_path / "a_out",
                 objective=make_objective(name, params, pad), progress=False)
    assert list(full.epoch) == [0, 1, 2] and full.train_loss.iloc[-1] < full.train_loss.iloc[0]

    with pytest.raises(Preempted):  # 3 steps per pass: stop in the middle of the second pass
        train(mcfg, tcfg, data, tmp_path / "b_resume", tmp_path / "b_out",
              objective=make_objective(name, params, pad), stop=StopAfter(5), progress=False)
    resumed = train(mcfg, tcfg, data, tmp_path / "b_resume", tmp_path / "b_out",
                    objective=make_objective(name, params, pad), progress=False)
    a, _, _ = load_model(tmp_path / "a_out" / "epoch2.pt")
    b, _, _ = load_model(tmp_path / "b_out" / "epoch2.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert resumed.acc.iloc[-1] == full.acc.iloc[-1]

    # A reloaded model file reproduces the metrics recorded during training: load_model
    # re-installs the eval-time forward pass from the file's metadata.
    again = evaluate(a, data, 64)
    assert again["acc"] == pytest.approx(full.acc.iloc[-1])
    assert again["memorization_score"] == pytest.approx(full.memorization_score.iloc[-1])
    if name == "example_tied_dropout":
        plain, _, _ = load_model(tmp_path / "a_out" / "epoch2.pt")
        remove_hooks(plain)  # the bare network, without the memorization channels dropped
        assert evaluate(plain, data, 64)["acc"] != pytest.approx(full.acc.iloc[-1])
