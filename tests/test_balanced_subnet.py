"""BalancedSubnet on a tiny model that memorized (unlearning.md B.6)."""

from __future__ import annotations

import copy

import pytest
import torch

from tinymem.metrics import memorization
from tinymem.mitigations.unlearning import config_from_dict, get
from tinymem.mitigations.unlearning.balanced_subnet import balanced_loss
from tinymem.mitigations.unlearning.runner import build_task


def _mem(model, data):
    return memorization(model, data.artifact_train, data.k, data.tokens.pad_id, "noise").percent_mem


def test_mask_sparsity_memorization_and_determinism(tiny_model, tiny_data):
    before = _mem(tiny_model, tiny_data)
    assert before > 0
    original = copy.deepcopy(tiny_model.state_dict())
    cfg = config_from_dict("balanced_subnet", {"ratio": 0.1, "epochs": 5, "loss_weighting": 0.5})
    task = build_task(tiny_model, tiny_data, seed=0, batch_size=64)
    assert len(task.forget) > 0 and len(task.retain) == len(tiny_data.retain_index)
    out = get("balanced_subnet").run(tiny_model, task, cfg)
    # Exactly ⌊0.1·numel⌋ entries dropped per MLP weight matrix; they are zero in the model.
    for name, dropped in out.mask.items():
        assert int(dropped.sum()) == int(0.1 * dropped.numel())
        w = out.model.state_dict()[name]
        assert bool((w[dropped] == 0).all())
        assert torch.equal(w[~dropped], original[name][~dropped])
    # Nothing but MLP weights changed (biases never masked).
    for name, value in out.model.state_dict().items():
        if name not in out.mask:
            assert torch.equal(value, original[name]), name
    assert out.n_changed == sum(int(m.sum()) for m in out.mask.values())
    assert _mem(out.model, tiny_data) < before
    # Same seed, same mask.
    again = copy.deepcopy(tiny_model)
    again.load_state_dict(original)
    out2 = get("balanced_subnet").run(again, build_task(again, tiny_data, seed=0, batch_size=64), cfg)
    assert all(torch.equal(out.mask[k], out2.mask[k]) for k in out.mask)


def test_empty_terms_contribute_zero_u10():
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    only_retain = balanced_loss(losses, torch.tensor([False, False, False]), 0.9)
    assert only_retain.item() == pytest.approx(0.9 * 2.0)
    only_forget = balanced_loss(losses, torch.tensor([True, True, True]), 0.9)
    assert only_forget.item() == pytest.approx(-0.1 * 2.0)
    only_forget.backward()
    assert torch.isfinite(losses.grad).all()
    mixed = balanced_loss(torch.tensor([4.0, 1.0, 3.0]), torch.tensor([True, False, False]), 0.7)
    assert mixed.item() == pytest.approx(-0.3 * 4.0 + 0.7 * 2.0)


def test_unknown_hyperparameter_is_named():
    with pytest.raises(ValueError, match="loss_weigthing"):
        config_from_dict("balanced_subnet", {"ratio": 0.1, "loss_weigthing": 0.5})
    with pytest.raises(KeyError, match="known methods"):
        get("balanced_subnett")
