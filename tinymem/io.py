"""Atomic file writes, strict readers and provenance stamps.

Every output of the workflow is written to a temporary file in the same folder and moved into
place with :func:`os.replace`, so a job killed mid-write never leaves a file that Snakemake (or a
resumed training run) would take as complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch

from tinymem import __version__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are 0600


class CorruptFileError(RuntimeError):
    """A file exists but cannot be read as what it claims to be."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)  # results are shared on clusters: not owner-only
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_torch(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike[str], *, what: str = "file") -> Any:
    """``torch.load`` (weights_only=False: our files hold plain dicts and dataclass metadata).

    Raises :class:`FileNotFoundError` or :class:`CorruptFileError` naming the path.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for truncated/corrupt zips
        raise CorruptFileError(
            f"{what} {p} is unreadable ({type(exc).__name__}: {exc}); it is probably truncated "
            "or corrupt. Delete it and rerun the rule that makes it."
        ) from exc


def write_json(obj: Any, path: str | os.PathLike[str], *, sort_keys: bool = True) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n")


def write_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def git_hash() -> str:
    """The git commit of the checkout holding this package, or ``"unknown"``."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, str]:
    """Version stamps carried by every result row and checkpoint."""
    import transformers

    return {
        "tinymem_version": __version__,
        "git_hash": git_hash(),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
    }
