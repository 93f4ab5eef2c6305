"""Shared fixtures: a tiny math data set and a tiny TinyMem model that memorized part of its noise.

Session-scoped and cached under pytest's cache dir, so the ~20 s of training happen once per
machine; every unlearning test starts from a copy of the same memorizing model.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch

from tinymem.checkpoints import load_model
from tinymem.data.core import TinyMemData
from tinymem.data.math import MathDataConfig, build_math_data
from tinymem.models import ModelConfig
from tinymem.training import TrainConfig, train

# One thread: tests often share the machine with other torch processes, and oversubscribed
# torch threads slow a step down tenfold or more.
torch.set_num_threads(1)
logging.getLogger("transformers").setLevel(logging.ERROR)

TINY_DATA = MathDataConfig(family="increment", artifact="noise", seed=0, num_7=160, num_extra=40, num_test=20,
                           num_noise=40, max_ctx=100)
TINY_TRAIN = TrainConfig(epochs=60, checkpoint_every=20, batch_size=16, seed=0)
TINY_WIDTH = 64


@pytest.fixture(scope="session")
def tiny_data() -> TinyMemData:
    return build_math_data(TINY_DATA)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory, tiny_data: TinyMemData) -> Path:
    """A 2-layer width-64 model trained to memorize most of the 22 counted noised rows (≈90 % at label 60)."""
    root = tmp_path_factory.mktemp("tiny_model")
    cfg = ModelConfig.for_data(tiny_data.tokens, tiny_data.max_ctx, n_layer=2, n_embd=TINY_WIDTH)
    train(cfg, TINY_TRAIN, tiny_data, root / "resume", root / "out", progress=False)
    return root / "out" / f"epoch{TINY_TRAIN.epochs}.pt"


@pytest.fixture()
def tiny_model(tiny_model_path: Path) -> torch.nn.Module:
    """A fresh copy of the memorizing model (tests may edit it freely)."""
    model, _, _ = load_model(tiny_model_path)
    return copy.deepcopy(model)
