"""Unlearning methods. Importing this package registers every method (explicit imports, style P2)."""

from tinymem.mitigations.unlearning import (  # noqa: F401  (importing registers each method)
    activations,
    balanced_subnet,
    durable,
    gradient_ascent,
    greedy,
    hard_concrete,
    integrated_gradients,
    random_mask,
    slimming,
    sou,
    subnet,
    zero_out,
)
from tinymem.mitigations.unlearning.registry import (
    REGISTRY,
    UnlearnMethod,
    UnlearnOutput,
    UnlearnTask,
    config_from_dict,
    config_to_dict,
    get,
    register,
)

__all__ = [
    "REGISTRY",
    "UnlearnMethod",
    "UnlearnOutput",
    "UnlearnTask",
    "config_from_dict",
    "config_to_dict",
    "get",
    "register",
]
