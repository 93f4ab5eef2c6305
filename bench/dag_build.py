"""How long the paper config's DAG takes to build, and what the wildcard constraints cost.

Runs ``snakemake -n --quiet rules`` on the paper config in two temporary copies of the workflow,
side by side in one process, and prints the job count, each wall time and their ratio:

* ``structural``: rules/common.smk as committed (a short pattern per wildcard);
* ``enumerated``: the same, but ``data`` and ``model`` constrained to the explicit list of every id
  (``a|b|c|…``), the common "constrain wildcards to config values" idiom.

Usage: ``.venv/bin/python bench/dag_build.py [--repeats 2]``. Numbers depend on the machine and
its load; the ratio is the claim.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENUMERATED = '''    data=_alternatives(DATASETS),
    model=_alternatives(MODELS),'''


def _copy(dest: Path, enumerated: bool) -> Path:
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    for d in ("rules", "workflow_scripts", "config", "envs"):
        shutil.copytree(ROOT / d, dest / d)
    if enumerated:
        common = dest / "rules" / "common.smk"
        text = common.read_text()
        text, n = re.subn(r"    data=r\".*?\",\n    model=r\".*?\",", ENUMERATED, text, flags=re.S)
        assert n == 1, "could not find the data/model constraints in rules/common.smk"
        common.write_text(text)
    return dest


def _dry_run(workdir: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules"], cwd=workdir,
                         capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - t0
    total = int(re.search(r"^total\s+(\d+)$", out, flags=re.M).group(1))
    return seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {name: _copy(Path(tmp) / name, name == "enumerated") for name in ("structural", "enumerated")
                if (Path(tmp) / name).mkdir() is None}
        best: dict[str, float] = {}
        for _ in range(args.repeats):  # interleaved, so load changes hit both
            for name, wd in dirs.items():
                seconds, total = _dry_run(wd)
                best[name] = min(best.get(name, float("inf")), seconds)
        print(f"paper DAG: {total} jobs")
        for name, seconds in best.items():
            print(f"  {name:<11} {seconds:7.1f} s  ({total / seconds:,.0f} jobs/s, best of {args.repeats})")
        print(f"  enumerated / structural = {best['enumerated'] / best['structural']:.2f}x")


if __name__ == "__main__":
    main()
