"""Collect the last checkpoint of every training history (rule math_training_table)."""

from typing import TYPE_CHECKING

from tinymem.io import write_csv
from tinymem.runtime import setup_job
from tinymem.tables import training_summary

if TYPE_CHECKING:
    from snakemake.script import snakemake

setup_job(snakemake.log[0])
write_csv(training_summary(snakemake.input), snakemake.output[0])
