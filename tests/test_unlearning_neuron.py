"""The five neuron-level unlearning methods (reference unlearning.md A.1–A.6) on the tiny model.

Each method must: run; zero n_layer·⌊inner·ratio⌋ neurons (U8) through their ``c_fc`` column and
bias (U1) and change nothing else; give identical masks for the same seed; and lower memorization
of the forget rows. The fast scoring paths (resuming from a layer's block output) are checked
against plain ``mlp.act`` hooks on the full model.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tinymem.checkpoints import load_model
from tinymem.data.core import TinyMemData
from tinymem.metrics import memorization, trim
from tinymem.mitigations.unlearning import activations, hard_concrete, integrated_gradients, neurons, slimming, zero_out
from tinymem.mitigations.unlearning.registry import UnlearnTask, config_from_dict, get
from tinymem.mitigations.unlearning.runner import build_task

RATIO = 0.05  # k = ⌊256 · 0.05⌋ = 12 neurons per layer on the width-64 tiny model
CASES = {
    "zero_out": {"ratio": RATIO, "max_rows": 6},
    "activations": {"ratio": RATIO},
    "slimming": {"ratio": RATIO, "epochs": 3},
    "hard_concrete": {"ratio": RATIO, "epochs": 3},
    "integrated_gradients": {"ratio": RATIO, "ig_steps": 8, "max_rows": 6},
}
PAPER_NAMES = {"zero_out": "Zero-out", "activations": "Activations", "slimming": "Slimming",
               "hard_concrete": "Hard Concrete", "integrated_gradients": "Integrated Gradients"}


def percent_mem(model: torch.nn.Module, data: TinyMemData) -> float:
    return memorization(model, data.artifact_train, data.k, data.tokens.pad_id, data.artifact).percent_mem


@pytest.fixture(scope="module")
def base(tiny_model_path: Path) -> torch.nn.Module:
    model, _, _ = load_model(tiny_model_path)
    return model.eval()


@pytest.fixture(scope="module")
def task(base: torch.nn.Module, tiny_data: TinyMemData) -> UnlearnTask:
    t = build_task(base, tiny_data, seed=0, batch_size=64)
    assert len(t.forget) > 0, "the tiny model must have memorized some rows"
    return t


@pytest.fixture(scope="module")
def mem_before(base: torch.nn.Module, tiny_data: TinyMemData) -> float:
    return percent_mem(base, tiny_data)


def assert_only_neurons_zeroed(before: torch.nn.Module, after: torch.nn.Module, mask: torch.Tensor) -> None:
    ref = before.state_dict()
    for name, value in after.state_dict().items():
        if ".mlp.c_fc." in name:
            layer = int(name.split(".h.")[1].split(".")[0])
            sel = mask[layer]
            if name.endswith("weight"):  # Conv1D [n_embd, inner]: column i feeds neuron i
                assert torch.all(value[:, sel] == 0), name
                assert torch.equal(value[:, ~sel], ref[name][:, ~sel]), name
            else:
                assert torch.all(value[sel] == 0), name
                assert torch.equal(value[~sel], ref[name][~sel]), name
        else:
            assert torch.equal(value, ref[name]), f"{name} changed"


@pytest.mark.parametrize("method", list(CASES))
def test_neuron_method(method: str, tiny_model: torch.nn.Module, tiny_data: TinyMemData, task: UnlearnTask,
                       mem_before: float) -> None:
    spec = get(method)
    assert spec.level == "neuron" and spec.paper_name == PAPER_NAMES[method]
    cfg = config_from_dict(method, CASES[method])
    pristine = copy.deepcopy(tiny_model)
    twin = copy.deepcopy(tiny_model)
    L = tiny_model.config.n_layer
    inner = neurons.inner_dim(tiny_model)

    torch.manual_seed(0)
    out = spec.run(tiny_model, task, cfg)
    mask = out.mask["neurons"]
    assert out.model is tiny_model
    assert mask.shape == (L, inner) and mask.dtype == torch.bool
    k = int(inner * RATIO)
    assert k > 0 and mask.sum(1).tolist() == [k] * L
    assert out.n_changed == L * k and out.n_candidates == L * inner
    assert_only_neurons_zeroed(pristine, out.model, mask)

    torch.manual_seed(0)
    again = spec.run(twin, task, cfg)
    assert torch.equal(again.mask["neurons"], mask), "same seed must give the same neurons"

    assert percent_mem(out.model, tiny_data) < mem_before


def test_ratio_counts_and_ties() -> None:
    scores = torch.tensor([[0.0, 3.0, 3.0, 1.0, float("nan")], [5.0, 4.0, 3.0, 2.0, 1.0]])
    assert not neurons.top_k_per_layer(scores, 0.1).any()  # ⌊5 · 0.1⌋ = 0: nothing (U8)
    m = neurons.top_k_per_layer(scores, 0.4)  # k = 2
    assert m.tolist() == [[False, True, True, False, False], [True, True, False, False, False]]
    m = neurons.top_k_per_layer(torch.zeros(2, 5), 0.4)  # ties go to the lower index
    assert m[:, :2].all() and not m[:, 2:].any()
    assert neurons.k_per_layer(512, 0.001) == 0 and neurons.k_per_layer(512, 0.05) == 25


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="ratio"):
        zero_out.ZeroOutConfig(ratio=1.0)
    with pytest.raises(ValueError, match="max_rows"):
        zero_out.ZeroOutConfig(max_rows=0)
    with pytest.raises(ValueError, match="ig_steps"):
        integrated_gradients.IntegratedGradientsConfig(ig_steps=1)
    with pytest.raises(ValueError, match="epochs"):
        slimming.SlimmingConfig(epochs=0)
    with pytest.raises(ValueError, match="beta"):
        hard_concrete.HardConcreteConfig(beta=0.0)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        config_from_dict("activations", {"ratio": 0.01, "epochs": 3})
    assert integrated_gradients.IntegratedGradientsConfig().ig_steps == 20  # paper value (U4)


def test_resumed_passes_match_hooks(base: torch.nn.Module, task: UnlearnTask) -> None:
    """run_blocks / run_positions / the zero-out shortcut reproduce hooked full-model passes."""
    pad = task.pad_id
    rows, plen = trim(task.forget[:3], pad), task.forget_prompt_len[:3]
    with torch.no_grad():
        tr = neurons.trace(base, rows)
        for layer in range(base.config.n_layer):
            resumed = neurons.run_blocks(base, tr.out[layer], layer + 1)
            torch.testing.assert_close(resumed, tr.logits, rtol=1e-4, atol=1e-4)

        # Zero-out: the shortcut's score equals ablating the neuron with a hook on mlp.act.
        scores = zero_out.zero_out_scores(base, rows, plen, pad, batch_size=64)
        cont = neurons.continuation_targets(rows, plen, pad)
        ref_base = zero_out.continuation_loss(tr.logits, rows, cont).mean()
        for layer, j in [(0, 3), (1, int(scores[1].argmax()))]:
            def ablate(l: int, out: torch.Tensor, layer: int = layer, j: int = j) -> torch.Tensor | None:
                if l != layer:
                    return None
                out = out.clone()
                out[..., j] = 0.0
                return out
            with neurons.patch_acts(base, ablate):
                loss = zero_out.continuation_loss(base(input_ids=rows).logits, rows, cont).mean()
            torch.testing.assert_close(scores[layer, j], loss - ref_base, rtol=1e-3, atol=1e-5)

        # IG: rescaling layer-l activations at one position t only, resumed from block l+1 against
        # cached keys/values, equals upstream's hook on the prefix x[:t+1].
        row = rows[0]
        t1 = neurons.trace(base, row[None])
        keys, values = [k[0] for k in t1.keys], [v[0] for v in t1.values]
        pos = torch.tensor([int(plen[0]) - 1, int(plen[0]) + 5])
        for layer in range(base.config.n_layer):
            a = t1.acts[layer][0, pos]
            scaled = 0.3 * a
            hidden = t1.out[layer][0, pos] + neurons.mlp_delta(base, layer, scaled - a)
            fast = neurons.run_positions(base, hidden, layer + 1, pos, keys, values)
            for i, t in enumerate(pos.tolist()):
                def rescale(l: int, out: torch.Tensor, layer: int = layer,
                            v: torch.Tensor = scaled[i]) -> torch.Tensor | None:
                    if l != layer:
                        return None
                    out = out.clone()
                    out[:, -1] = v
                    return out
                with neurons.patch_acts(base, rescale):
                    ref = base(input_ids=row[None, : t + 1]).logits[0, -1]
                torch.testing.assert_close(fast[i], ref, rtol=1e-4, atol=1e-4)


def test_hooks_removed_and_model_unchanged_by_scoring(base: torch.nn.Module, task: UnlearnTask) -> None:
    model = copy.deepcopy(base)
    ref = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        activations.activation_scores(model, task.forget, task.forget_prompt_len, task.pad_id, 64)
    assert all(not m._forward_hooks for m in model.modules())
    for name, value in model.state_dict().items():
        assert torch.equal(value, ref[name])
