"""Atomic writes and strict readers (tinymem.io): a killed or failed write never leaves a file
that looks complete, and an unreadable file is named in the error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tinymem.io import CorruptFileError, atomic_path, load_torch, save_torch, write_csv


def test_failed_write_leaves_the_old_file_and_no_temporaries(tmp_path: Path):
    target = tmp_path / "out.csv"
    write_csv(pd.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("a\n2\n3\n")  # half of a new version
            raise RuntimeError("boom")
    assert pd.read_csv(target).a.tolist() == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_killed_writer_leaves_no_target(tmp_path: Path):
    target = tmp_path / "big.pt"
    child = (
        "import sys, time\n"
        "from tinymem.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'x' * 1000)\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".big.pt.") and leftovers[0].suffix == ".tmp"


def test_written_files_follow_the_umask(tmp_path: Path):
    save_torch({"w": torch.ones(2)}, tmp_path / "m.pt")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_truncated_and_missing_files_are_named(tmp_path: Path):
    save_torch({"w": torch.arange(1000)}, tmp_path / "m.pt")
    assert torch.equal(load_torch(tmp_path / "m.pt")["w"], torch.arange(1000))
    raw = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match="half.pt"):
        load_torch(tmp_path / "half.pt", what="checkpoint")
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pt"):
        load_torch(tmp_path / "nope.pt", what="checkpoint")
