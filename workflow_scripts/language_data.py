"""Build one language data set and its tokenizer (rule language_data)."""

from typing import TYPE_CHECKING

from tinymem.data.language import LanguageDataConfig, build_language_data
from tinymem.runtime import setup_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

setup_job(snakemake.log[0], snakemake.threads)
data = build_language_data(LanguageDataConfig(**snakemake.params.cfg), snakemake.output.tokenizer)
data.save(snakemake.output.data)
