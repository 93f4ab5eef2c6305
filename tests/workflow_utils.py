"""Helpers for tests that run the real Snakemake CLI on a copy of the workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = "tests/config/tiny.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_workflow(dest: Path) -> Path:
    """Copy the files a run needs (not results/ or .snakemake/) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    for d in ("rules", "workflow_scripts", "config", "profiles", "envs"):
        shutil.copytree(ROOT / d, dest / d, dirs_exist_ok=True)
    (dest / "tests" / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / TINY, dest / TINY)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Job counts per rule of a dry run (``snakemake -n --quiet rules``).

    ``args`` come first, so a target given after ``--configfile X`` would be read as a config
    file: pass targets before ``--configfile``.
    """
    out = snakemake(workdir, *args, "-n", "--quiet", "rules").stdout
    counts = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts
