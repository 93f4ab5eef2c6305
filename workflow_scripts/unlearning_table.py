"""Aggregate unlearning rows into the best-run table (rule math_unlearning_table)."""

from typing import TYPE_CHECKING

from tinymem.io import write_csv, write_text
from tinymem.runtime import setup_job
from tinymem.tables import best_runs, read_rows, summarize, to_markdown

if TYPE_CHECKING:
    from snakemake.script import snakemake

setup_job(snakemake.log[0])
runs = read_rows(snakemake.input)
best = best_runs(runs)
table = summarize(best)
write_csv(runs, snakemake.output.runs)
write_csv(table, snakemake.output.best)
write_text(to_markdown(table), snakemake.output.markdown)
