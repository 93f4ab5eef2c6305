"""The unlearning method registry (style P2, after PEFT's ``register_peft_method``).

A method is one module holding a docstring that cites the paper section, a frozen dataclass config
with typed, commented fields, a ``run`` function with the shared signature and one
:func:`register` call. One string names a method everywhere: module, registry key, config key,
schema enum, ``{method}`` wildcard and table column.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor
from transformers import GPT2LMHeadModel

_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@dataclass
class UnlearnTask:
    """What every method receives besides the model and its config.

    Attributes:
        forget: ``[F, T]`` the memorized rows, as trained on (noised or backdoored).
        forget_prompt_len: ``[F]`` prompt length of each forget row.
        retain: ``[R, T]`` clean rows the model should keep doing well on (U6).
        pad_id: PAD token id; every loss counts real tokens only (Q7).
        seed: seeds every random choice of the method (mask init, data order).
        batch_size: batch size of the method's own passes (U7).
        device: where to compute.
    """

    forget: Tensor
    forget_prompt_len: Tensor
    retain: Tensor
    pad_id: int
    seed: int = 0
    batch_size: int = 64
    device: str | torch.device = "cpu"

    def generator(self, purpose: str) -> torch.Generator:
        """An independent, seeded torch generator per purpose."""
        offset = sum(ord(c) * 31**i for i, c in enumerate(purpose)) % (2**31)
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)


@dataclass
class UnlearnOutput:
    """The edited model and what changed.

    ``n_changed`` counts the weights (weight level) or neurons (neuron level) the method zeroed or
    updated; ``n_candidates`` the entries it could have touched, so ``n_changed / n_candidates`` is
    the fraction of weights or neurons changed (U8). ``mask`` maps a parameter name (or
    ``"neurons"``) to a bool tensor of changed entries.
    """

    model: GPT2LMHeadModel
    n_changed: int
    n_candidates: int
    mask: dict[str, Tensor] = field(default_factory=dict)
    info: dict[str, float] = field(default_factory=dict)


RunFn = Callable[[GPT2LMHeadModel, UnlearnTask, Any], UnlearnOutput]


@dataclass(frozen=True)
class UnlearnMethod:
    name: str
    config_cls: type
    run: RunFn
    level: str  # "neuron", "weight" or "model" (updates all weights)
    paper_name: str


REGISTRY: dict[str, UnlearnMethod] = {}


def register(name: str, config_cls: type, run: RunFn, *, level: str, paper_name: str) -> None:
    """Add a method; refuses duplicates, non-snake_case names and non-dataclass configs."""
    if not _NAME.match(name):
        raise ValueError(f"method name {name!r} must be lowercase snake_case")
    if name in REGISTRY:
        raise ValueError(f"method {name!r} is already registered")
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config of {name!r} must be a dataclass, got {config_cls!r}")
    if level not in ("neuron", "weight", "model"):
        raise ValueError(f"level of {name!r} must be neuron, weight or model, got {level!r}")
    REGISTRY[name] = UnlearnMethod(name, config_cls, run, level, paper_name)


def get(name: str) -> UnlearnMethod:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown unlearning method {name!r}; known methods: {', '.join(sorted(REGISTRY))}") from None


def config_from_dict(name: str, params: dict[str, Any]) -> Any:
    """Build a method's config; unknown keys are errors that name the key and the method."""
    method = get(name)
    fields = {f.name: f for f in dataclasses.fields(method.config_cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for method {name!r}; allowed: {sorted(fields)}")
    return method.config_cls(**params)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
