"""Run every unlearning method's grid on one checkpoint (rule unlearn): one CSV per method."""

from pathlib import Path
from typing import TYPE_CHECKING

from tinymem.data.core import TinyMemData
from tinymem.io import write_csv
from tinymem.mitigations.unlearning.runner import run_grids
from tinymem.runtime import setup_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

device = setup_job(snakemake.log[0], snakemake.threads)
grid = snakemake.params.grid
tables = run_grids(
    Path(snakemake.input.checkpoints) / f"epoch{snakemake.wildcards.epoch}.pt",
    TinyMemData.load(snakemake.input.data),
    grid["cells"],
    grid["seeds"],
    snakemake.params.cache_dir,
    batch_size=grid["batch_size"],
    retain_size=grid["retain_size"],
    retain_includes_noise=grid["retain_includes_noise"],
    labels={"model": snakemake.wildcards.model},
    device=device,
)
for method, path in zip(snakemake.params.methods, snakemake.output, strict=True):
    write_csv(tables[method], path)
