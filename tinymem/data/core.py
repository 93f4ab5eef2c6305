"""The data container shared by math and language TinyMem.

A data file carries everything later stages need, so no rule ever recomputes an artifact:
the training rows (artifact rows first, duplicated as configured), the artifact rows with their
clean twins, prompt lengths and duplication groups, the retain rows for unlearning, the clean test
sets, the token ids and the generating config (seed, trigger, which rows were noised).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from tinymem.io import load_torch, save_torch

FORMAT_VERSION = 1


class DataFormatError(ValueError):
    """A data file does not have the fields or shapes a TinyMem data file must have."""


@dataclass(frozen=True)
class TokenInfo:
    """Special token ids and vocabulary size of a data set's tokenizer."""

    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int


@dataclass
class MemSet:
    """Artifact rows, evaluated for memorization against their clean twins.

    Attributes:
        rows: ``[M, T]`` the artifact version (noised, or backdoored) of each row.
        clean: ``[M, T]`` the clean twin of each row (the prompt is taken from it).
        prompt_len: ``[M]`` prompt length per row (50 for noise; right after the trigger for
            backdoors).
        group: ``[M]`` duplication group (0 when the data are not duplicated).
    """

    rows: Tensor
    clean: Tensor
    prompt_len: Tensor
    group: Tensor

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def subset(self, index: Tensor) -> "MemSet":
        return MemSet(self.rows[index], self.clean[index], self.prompt_len[index], self.group[index])

    def to_dict(self) -> dict[str, Tensor]:
        return {"rows": self.rows, "clean": self.clean, "prompt_len": self.prompt_len, "group": self.group}

    @classmethod
    def from_dict(cls, d: dict[str, Tensor], *, where: str) -> "MemSet":
        missing = {"rows", "clean", "prompt_len", "group"} - set(d)
        if missing:
            raise DataFormatError(f"{where}: missing fields {sorted(missing)}")
        ms = cls(d["rows"], d["clean"], d["prompt_len"], d["group"])
        m = ms.rows.shape[0]
        if ms.rows.dim() != 2 or ms.clean.shape != ms.rows.shape:
            raise DataFormatError(
                f"{where}: rows {tuple(ms.rows.shape)} and clean {tuple(ms.clean.shape)} must both be [M, T]"
            )
        if ms.prompt_len.shape != (m,) or ms.group.shape != (m,):
            raise DataFormatError(f"{where}: prompt_len and group must have shape [{m}]")
        return ms


@dataclass
class TinyMemData:
    """One TinyMem data set.

    Attributes:
        kind: ``"math"`` or ``"language"``.
        artifact: ``"noise"`` or ``"backdoor"``.
        train: ``[N, T]`` training rows, artifact rows (with duplicates) first.
        train_example_id: ``[N]`` original example id of each training row; duplicated copies
            share one id (example-tied dropout keys its masks on it).
        retain_index: ``[R]`` indices into ``train`` of the clean rows that carry no artifact:
            the unlearning retain set and the ``extra`` fine-tuning set (reference U6).
        artifact_train: the unique artifact rows trained on, with clean twins.
        artifact_eval: where memorization is reported; for noise the same rows as
            ``artifact_train`` (the paper measures on the training noise rows), for backdoors the
            held-out triggered rows (attack success on unseen prompts).
        tests: clean test sets by name (math: ``c7``, ``c2`` … ``c5``; language: ``test``).
        tokens: special token ids.
        k: continuation length compared for memorization (50 in the paper).
        meta: generating configuration and derived facts (seed, trigger, noised row ids, …).
    """

    kind: str
    artifact: str
    train: Tensor
    train_example_id: Tensor
    retain_index: Tensor
    artifact_train: MemSet
    artifact_eval: MemSet
    tests: dict[str, Tensor]
    tokens: TokenInfo
    k: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_ctx(self) -> int:
        return int(self.train.shape[1])

    def retain_rows(self) -> Tensor:
        """``[R, T]`` clean training rows without any artifact."""
        return self.train[self.retain_index]

    def save(self, path: str | os.PathLike[str]) -> None:
        save_torch(
            {
                "format_version": FORMAT_VERSION,
                "kind": self.kind,
                "artifact": self.artifact,
                "train": self.train,
                "train_example_id": self.train_example_id,
                "retain_index": self.retain_index,
                "artifact_train": self.artifact_train.to_dict(),
                "artifact_eval": self.artifact_eval.to_dict(),
                "tests": self.tests,
                "tokens": asdict(self.tokens),
                "k": self.k,
                "meta": self.meta,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "TinyMemData":
        """Load and validate a data file; errors name the file and the offending field."""
        d = load_torch(path, what="data file")
        where = f"data file {path}"
        if not isinstance(d, dict) or d.get("format_version") != FORMAT_VERSION:
            raise DataFormatError(f"{where}: not a TinyMem data file (format_version {FORMAT_VERSION} expected)")
        required = {"kind", "artifact", "train", "train_example_id", "retain_index", "artifact_train",
                    "artifact_eval", "tests", "tokens", "k", "meta"}
        missing = required - set(d)
        if missing:
            raise DataFormatError(f"{where}: missing fields {sorted(missing)}")
        data = cls(
            kind=d["kind"],
            artifact=d["artifact"],
            train=d["train"],
            train_example_id=d["train_example_id"],
            retain_index=d["retain_index"],
            artifact_train=MemSet.from_dict(d["artifact_train"], where=f"{where} artifact_train"),
            artifact_eval=MemSet.from_dict(d["artifact_eval"], where=f"{where} artifact_eval"),
            tests=d["tests"],
            tokens=TokenInfo(**d["tokens"]),
            k=int(d["k"]),
            meta=d["meta"],
        )
        data.validate(where)
        return data

    def validate(self, where: str = "data") -> None:
        """Check shapes and id ranges; raise :class:`DataFormatError` naming the field."""
        if self.kind not in ("math", "language"):
            raise DataFormatError(f"{where}: kind must be 'math' or 'language', got {self.kind!r}")
        if self.artifact not in ("noise", "backdoor"):
            raise DataFormatError(f"{where}: artifact must be 'noise' or 'backdoor', got {self.artifact!r}")
        if self.train.dim() != 2 or self.train.dtype != torch.long:
            raise DataFormatError(f"{where}: train must be a 2-D int64 tensor, got {tuple(self.train.shape)} {self.train.dtype}")
        n, t = self.train.shape
        if self.train_example_id.shape != (n,):
            raise DataFormatError(f"{where}: train_example_id must have shape [{n}]")
        if self.retain_index.numel() and int(self.retain_index.max()) >= n:
            raise DataFormatError(f"{where}: retain_index points past the {n} training rows")
        for name, ms in (("artifact_train", self.artifact_train), ("artifact_eval", self.artifact_eval)):
            if ms.rows.shape[1] != t:
                raise DataFormatError(f"{where}: {name} rows have width {ms.rows.shape[1]}, train has {t}")
        for name, rows in self.tests.items():
            if rows.dim() != 2 or rows.shape[1] != t:
                raise DataFormatError(f"{where}: test set {name!r} has shape {tuple(rows.shape)}, expected [*, {t}]")
        v = self.tokens.vocab_size
        for name, rows in [("train", self.train), *[(f"tests[{k}]", r) for k, r in self.tests.items()]]:
            if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= v):
                raise DataFormatError(f"{where}: {name} holds token ids outside [0, {v})")
