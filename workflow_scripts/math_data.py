"""Generate one math data set (rule math_data)."""

from typing import TYPE_CHECKING

from tinymem.data.math import MathDataConfig, build_math_data
from tinymem.runtime import setup_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

setup_job(snakemake.log[0], snakemake.threads)
build_math_data(MathDataConfig(**snakemake.params.cfg)).save(snakemake.output[0])
