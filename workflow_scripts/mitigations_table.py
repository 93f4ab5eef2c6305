"""Every mitigation family in one table (rule math_mitigations_table)."""

from typing import TYPE_CHECKING

import pandas as pd

from tinymem.io import write_csv, write_text
from tinymem.runtime import setup_job
from tinymem.tables import mitigation_markdown, mitigation_summary, read_rows

if TYPE_CHECKING:
    from snakemake.script import snakemake

setup_job(snakemake.log[0])
table = mitigation_summary(
    [read_rows([p], required=("model", "data", "objective", "percent_mem")) for p in snakemake.input.histories],
    [read_rows([p], required=("model", "variant", "epoch", "percent_mem")) for p in snakemake.input.finetune],
    pd.read_csv(snakemake.input.unlearning),
)
write_csv(table, snakemake.output.csv)
write_text(mitigation_markdown(table), snakemake.output.markdown)
