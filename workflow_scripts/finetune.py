"""Fine-tune one model on one data variant (rule finetune)."""

from pathlib import Path
from typing import TYPE_CHECKING

from tinymem.data.core import TinyMemData
from tinymem.io import write_csv
from tinymem.mitigations.finetune import FinetuneConfig, finetune
from tinymem.runtime import preemptible, setup_job
from tinymem.training import install_stop_handler

if TYPE_CHECKING:
    from snakemake.script import snakemake

device = setup_job(snakemake.log[0], snakemake.threads)
with preemptible():
    rows = finetune(
        Path(snakemake.input.checkpoints) / f"epoch{snakemake.params.epoch}.pt",
        TinyMemData.load(snakemake.input.data),
        FinetuneConfig(**snakemake.params.cfg),
        snakemake.params.resume_dir,
        stop=install_stop_handler(),
        device=device,
    )
write_csv(rows.assign(model=snakemake.wildcards.model), snakemake.output[0])
