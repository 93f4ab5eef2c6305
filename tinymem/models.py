"""TinyMem GPT-2 models (reference: training.md §5).

A stock Hugging Face ``GPT2LMHeadModel`` with the paper's settings: width 128, 4 heads, ReLU MLP,
no dropout, LM head tied to the token embedding, init std 0.8/√width.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from tinymem.data.core import TokenInfo


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one TinyMem model."""

    n_layer: int = 4  # paper sweeps {2, 4, 8, 16}
    n_embd: int = 128  # width; head dim = n_embd / n_head = 32
    n_head: int = 4  # hard-coded 4 upstream
    n_positions: int = 150  # = max_ctx of the data
    vocab_size: int = 14  # 14 for math; the tokenizer's size for language
    pad_id: int = 13
    bos_id: int = 10
    eos_id: int = 11

    def __post_init__(self) -> None:
        if self.n_layer < 1:
            raise ValueError(f"n_layer must be >= 1, got {self.n_layer}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")

    @classmethod
    def for_data(cls, tokens: TokenInfo, max_ctx: int, n_layer: int, n_embd: int = 128, n_head: int = 4) -> "ModelConfig":
        return cls(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=max_ctx,
                   vocab_size=tokens.vocab_size, pad_id=tokens.pad_id, bos_id=tokens.bos_id, eos_id=tokens.eos_id)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def hf_config(cfg: ModelConfig) -> GPT2Config:
    return GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=None,  # 4·n_embd = 512, the GPT-2 default
        activation_function="relu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        # 0.8/sqrt(d) as upstream; HF then rescales c_proj by 1/sqrt(2·n_layer).
        initializer_range=0.8 / math.sqrt(cfg.n_embd),
        bos_token_id=cfg.bos_id,
        eos_token_id=cfg.eos_id,
        pad_token_id=cfg.pad_id,
        tie_word_embeddings=True,
    )


def build_model(cfg: ModelConfig, seed: int | None = None) -> GPT2LMHeadModel:
    """A freshly initialized TinyMem model; ``seed`` makes the init reproducible."""
    if seed is not None:
        # HF init draws from the global torch RNG; fork it so callers' streams are untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = GPT2LMHeadModel(hf_config(cfg))
    else:
        model = GPT2LMHeadModel(hf_config(cfg))
    model.generation_config.pad_token_id = cfg.pad_id
    return model


def mlp_modules(model: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """``(c_fc, c_proj)`` of every block, in layer order (layers addressed by index: U1)."""
    return [(block.mlp.c_fc, block.mlp.c_proj) for block in model.transformer.h]
