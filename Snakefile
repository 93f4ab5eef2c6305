# tinymem-workflow: "Mitigating Memorization in Language Models" (Sakarvadia et al., ICLR 2025),
# reproduced end to end. The science lives in the `tinymem` package; rules here only wire files.
#
# results/<run>/
#   data/<data>.pt                              generated data sets (rows, artifacts, metadata)
#   models/<model>/checkpoints/epoch<E>.pt      model files at the labels used downstream
#   models/<model>/history.csv                  metrics per epoch (memorization at checkpoints)
#   unlearn/<model>/epoch<E>/<method>.csv       one row per grid cell × seed
#   tables/math_unlearning{,_runs}.{csv,md}     best run per method (U11) and every run
#   tables/math_training.csv                    memorization and accuracy of every trained model
#   logs/, benchmarks/                          one log and one benchmark file per job
#   _resume/                                    resumable state (never a declared output)


from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


report: "rules/report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/unlearn.smk"
include: "rules/tables.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
