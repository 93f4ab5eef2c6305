"""Train (or resume) one TinyMem model, plain or with a regularizer (rule train).

SIGTERM/SIGUSR1 (SLURM before a time limit, with --signal) write a resumable state and exit
non-zero, so Snakemake's retry continues from it.
"""

from pathlib import Path
from typing import TYPE_CHECKING

from tinymem.data.core import TinyMemData
from tinymem.io import write_csv
from tinymem.mitigations.regularizers import make_objective
from tinymem.models import ModelConfig
from tinymem.runtime import preemptible, setup_job
from tinymem.training import TrainConfig, install_stop_handler, train

if TYPE_CHECKING:
    from snakemake.script import snakemake

device = setup_job(snakemake.log[0], snakemake.threads)
stop = install_stop_handler()
data = TinyMemData.load(snakemake.input.data)
arch = ModelConfig.for_data(data.tokens, data.max_ctx, **snakemake.params.arch)
cfg = TrainConfig(**snakemake.params.train)
objective = make_objective(snakemake.params.objective["name"], snakemake.params.objective["params"],
                           data.tokens.pad_id, cfg.pad_in_loss)
with preemptible():
    history = train(arch, cfg, data, snakemake.params.resume_dir, Path(snakemake.output.checkpoints),
                    objective=objective, stop=stop, device=device, labels=snakemake.params.labels)
write_csv(history, snakemake.output.history)
