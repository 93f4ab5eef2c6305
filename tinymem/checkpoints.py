"""Self-describing model checkpoints (style P5).

Two kinds of files:

* a **model file** (``save_model``/``load_model``): weights, the architecture and metadata such
  as the epoch label and the metrics at that label; this is what downstream rules read;
* a **training state** (``tinymem.training``): weights plus optimizer and RNG state, kept in an
  undeclared resume folder so a failed or killed job can continue.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import GPT2LMHeadModel

from tinymem.io import CorruptFileError, load_torch, provenance, save_torch
from tinymem.models import ModelConfig, build_model

MODEL_FORMAT = "tinymem-model/1"


def save_model(
    path: str | os.PathLike[str],
    model: GPT2LMHeadModel,
    cfg: ModelConfig,
    meta: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """Write weights + architecture + metadata atomically.

    ``optimizer_state`` (the AdamW state at this label) lets fine-tuning continue with the same
    optimizer, as upstream's ``ft_toy_model.py`` does; read it with :func:`load_optimizer_state`.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_torch(
        {"format": MODEL_FORMAT, "model_config": cfg.to_dict(), "state_dict": state,
         "meta": {**meta, **provenance()}, "optimizer": optimizer_state},
        path,
    )


def load_optimizer_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The optimizer state stored with a model file, or ``None`` if it has none."""
    d = load_torch(path, what="model checkpoint")
    if not isinstance(d, dict) or d.get("format") != MODEL_FORMAT:
        raise CorruptFileError(f"model checkpoint {path} is not a {MODEL_FORMAT} file")
    return d.get("optimizer")


def load_model(path: str | os.PathLike[str], expect: ModelConfig | None = None) -> tuple[GPT2LMHeadModel, ModelConfig, dict[str, Any]]:
    """Load a model file; the architecture comes from the file (nanoGPT style).

    Raises :class:`FileNotFoundError`, :class:`CorruptFileError` (unreadable, wrong format or
    mismatched weights) or :class:`ValueError` when ``expect`` differs from the file's architecture.
    """
    d = load_torch(path, what="model checkpoint")
    if not isinstance(d, dict) or d.get("format") != MODEL_FORMAT:
        raise CorruptFileError(f"model checkpoint {path} is not a {MODEL_FORMAT} file")
    cfg = ModelConfig(**d["model_config"])
    if expect is not None and expect != cfg:
        raise ValueError(f"model checkpoint {path} holds architecture {cfg}, but {expect} was requested")
    model = build_model(cfg)
    try:
        model.load_state_dict(d["state_dict"])
    except RuntimeError as exc:
        raise CorruptFileError(f"model checkpoint {path}: weights do not fit its architecture: {exc}") from exc
    # A model trained with example-tied dropout is evaluated with its memorization channels
    # dropped: re-install that forward pass so every consumer sees the network that was evaluated.
    from tinymem.mitigations.regularizers import apply_eval_hooks_from_meta  # lazy: regularizers imports training

    apply_eval_hooks_from_meta(model, d["meta"])
    return model, cfg, d["meta"]
