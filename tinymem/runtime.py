"""Process setup shared by the workflow's entry points: logging, threads, device."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

import torch


def pick_device() -> torch.device:
    """The first CUDA device if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup_job(log_path: str | Path | None, threads: int = 1) -> torch.device:
    """Send logging and stderr (tqdm progress) to ``log_path``, cap torch threads, pick a device.

    Torch jobs are run with their own thread count (training.md §12.7: two 2-thread torch
    processes on 2 cores slow each other down up to 6×).
    """
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        sys.stderr = stream
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(max(1, int(threads)))
    device = pick_device()
    logging.getLogger(__name__).info("device %s, %d threads", device, torch.get_num_threads())
    return device


EX_TEMPFAIL = 75  # exit status of a job that stopped on request after saving a resumable state


@contextlib.contextmanager
def preemptible() -> Iterator[None]:
    """Exit with :data:`EX_TEMPFAIL` when training stops on a signal after saving its state.

    Snakemake then counts the job as failed and its retry resumes from the saved state.
    """
    from tinymem.training import Preempted  # lazy: keep this module light

    try:
        yield
    except Preempted as exc:
        logging.getLogger(__name__).warning("preempted: %s", exc)
        sys.exit(EX_TEMPFAIL)
