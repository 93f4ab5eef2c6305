"""Weight-level unlearning methods and the gradient-ascent baselines (reference unlearning.md B.2–B.5,
U5, U8, U12): counts, exact zeroing, determinism, and that memorization of the forget rows drops on
the tiny memorizing model."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tinymem.checkpoints import load_model
from tinymem.data.core import TinyMemData
from tinymem.metrics import lm_loss, memorization, memorized_rows, per_row_loss, trim
from tinymem.mitigations.unlearning import durable, gradient_ascent, greedy, random_mask, sou, subnet  # noqa: F401  (register)
from tinymem.mitigations.unlearning.registry import UnlearnOutput, config_from_dict, get
from tinymem.mitigations.unlearning.runner import build_task
from tinymem.mitigations.unlearning.sou import BlockFisherInverse, per_row_mlp_grads
from tinymem.mitigations.unlearning.supermask import drop_count
from tinymem.mitigations.unlearning.weights import mlp_params

# Per method: hyperparameters that show a drop on the tiny model quickly. Every method runs on one
# task with a small retain subset: Greedy does one forward/backward per zeroed weight (22 iterations
# here, ⌈2e-4 · 107,392⌉), and the forget rows are a larger share of each of its ±1 batches.
CASES: dict[str, dict[str, Any]] = {
    "greedy": {"ratio": 2e-4},
    "durable": {"ratio": 0.01},
    "durable_agg": {"ratio": 0.01},
    "sou": {"ratio": 0.01},
    "subnet": {"ratio": 0.05, "epochs": 3},
    "random_mask": {"ratio": 0.05},
    "ga_gd": {"lr": 1e-3, "epochs": 2},
    "ga_kl": {"lr": 1e-3, "epochs": 1},
}
TASK = {"seed": 0, "batch_size": 32, "retain_size": 19}
PER_MATRIX = {"durable", "sou", "subnet", "random_mask"}
WEIGHTS_ONLY = {"subnet", "random_mask"}  # never touch biases
MODEL_LEVEL = {"ga_gd", "ga_kl"}


class Runs:
    """Each method run twice with the same seed on fresh copies of the tiny model, once per module."""

    def __init__(self, base: torch.nn.Module, data: TinyMemData) -> None:
        self.base, self.data = base, data
        self.task = build_task(base, data, **TASK)
        self.forget_idx = memorized_rows(base, data)
        self._cache: dict[str, tuple[UnlearnOutput, UnlearnOutput]] = {}

    def __call__(self, method: str) -> tuple[UnlearnOutput, UnlearnOutput]:
        if method not in self._cache:
            cfg = config_from_dict(method, CASES[method])
            a, b = (get(method).run(copy.deepcopy(self.base), self.task, cfg) for _ in range(2))
            self._cache[method] = (a, b)
        return self._cache[method]

    def still_memorized(self, model: torch.nn.Module) -> int:
        """How many of the forget rows ``model`` still reproduces."""
        d = self.data
        res = memorization(model, d.artifact_train.subset(self.forget_idx), d.k, d.tokens.pad_id, d.artifact)
        return int((res.memorized & res.counted).sum())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These runs are many small ops: on 2 shared cores a second thread mostly adds contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tiny_model_path: Path, tiny_data: TinyMemData) -> Runs:
    base, _, _ = load_model(tiny_model_path)
    return Runs(base, tiny_data)


@pytest.mark.parametrize("method", sorted(CASES))
def test_counts(runs: Runs, method: str) -> None:
    out, _ = runs(method)
    ratio = CASES[method].get("ratio")
    n_mask = sum(int(m.sum()) for m in out.mask.values())
    assert out.n_changed == n_mask > 0
    if method in MODEL_LEVEL:
        assert out.n_candidates == sum(p.numel() for p in runs.base.parameters())
        assert set(out.mask) == {n for n, _ in runs.base.named_parameters()}
        return
    candidates = mlp_params(runs.base, weights_only=method in WEIGHTS_ONLY)
    assert out.n_candidates == sum(p.numel() for p in candidates.values())
    assert set(out.mask) <= set(candidates)
    if method in PER_MATRIX:
        assert set(out.mask) == set(candidates)
        for name, m in out.mask.items():
            assert int(m.sum()) == drop_count(m.numel(), ratio), name
    elif method == "durable_agg":
        assert n_mask == drop_count(out.n_candidates, ratio)
    elif method == "greedy":
        n_params = sum(p.numel() for p in runs.base.parameters())
        assert n_mask <= math.ceil(ratio * n_params)


@pytest.mark.parametrize("method", sorted(set(CASES) - MODEL_LEVEL))
def test_exact_zeroing(runs: Runs, method: str) -> None:
    """Chosen entries are exactly 0 and every other entry of every parameter is unchanged."""
    out, _ = runs(method)
    after = dict(out.model.named_parameters())
    for name, p in runs.base.named_parameters():
        expected = p.detach().clone()
        if name in out.mask:
            expected[out.mask[name]] = 0.0
        assert torch.equal(after[name].detach(), expected), name


@pytest.mark.parametrize("method", sorted(CASES))
def test_same_seed_same_result(runs: Runs, method: str) -> None:
    a, b = runs(method)
    assert a.n_changed == b.n_changed and set(a.mask) == set(b.mask)
    assert all(torch.equal(a.mask[n], b.mask[n]) for n in a.mask)
    pb = dict(b.model.named_parameters())
    assert all(torch.equal(p, pb[n]) for n, p in a.model.named_parameters())


@pytest.mark.parametrize("method", sorted(set(CASES) - {"random_mask"}))
def test_memorization_of_forget_rows_drops(runs: Runs, method: str) -> None:
    out, _ = runs(method)
    assert len(runs.task.forget) == len(runs.forget_idx) > 0
    assert runs.still_memorized(out.model) < len(runs.forget_idx)


@pytest.mark.parametrize("method", sorted(MODEL_LEVEL))
def test_gradient_ascent_retain_loss_finite(runs: Runs, tiny_data: TinyMemData, method: str) -> None:
    out, _ = runs(method)
    rows = trim(tiny_data.retain_rows(), tiny_data.tokens.pad_id)
    with torch.no_grad():
        loss = float(lm_loss(out.model(input_ids=rows, use_cache=False).logits, rows, tiny_data.tokens.pad_id))
    assert math.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in out.model.parameters())


def test_sou_per_row_gradients_match_autograd(tiny_model: torch.nn.Module, tiny_data: TinyMemData) -> None:
    pad = tiny_data.tokens.pad_id
    rows = trim(tiny_data.artifact_train.rows[:4], pad)
    params = mlp_params(tiny_model)
    grads = per_row_mlp_grads(tiny_model, rows, pad, set(params))
    for i in range(len(rows)):
        loss = per_row_loss(tiny_model(input_ids=rows[i : i + 1]).logits, rows[i : i + 1], pad)[0]
        for (name, _), ref in zip(params.items(), torch.autograd.grad(loss, list(params.values()))):
            torch.testing.assert_close(grads[name][i], ref, rtol=1e-4, atol=1e-6)


def test_sou_fisher_inverse_matches_direct_inverse() -> None:
    """Weighted Sherman–Morrison updates give the block inverses of λI + (1/m)Σ cᵢ gᵢgᵢᵀ."""
    d, block, lambd, m = 23, 5, 1e-3, 10
    g = torch.randn(4, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    counts = [3, 3, 2, 2]
    fisher = BlockFisherInverse(d, block, lambd, m, torch.device("cpu"))
    for gi, c in zip(g, counts):
        fisher.update(gi, c)
    padded = torch.nn.functional.pad(g, (0, 2))
    w = torch.tensor(counts, dtype=torch.float64)
    diag = []
    for b in range(5):
        gb = padded[:, b * block : (b + 1) * block]
        f = lambd * torch.eye(block, dtype=torch.float64) + (gb.T * w) @ gb / m
        diag.append(torch.linalg.inv(f).diagonal())
    torch.testing.assert_close(fisher.diagonal(), torch.cat(diag)[:d], rtol=1e-9, atol=0.0)


@pytest.mark.parametrize(("method", "params"), [("greedy", {"ratio": 1.0}), ("sou", {"block_size": 0}),
                                                ("subnet", {"epochs": 0}), ("ga_kl", {"lr": 0.0}),
                                                ("durable", {"lr": 0.1})])
def test_bad_configs_rejected(method: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        config_from_dict(method, params)
