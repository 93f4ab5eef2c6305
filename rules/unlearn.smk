# One job per checkpoint runs every unlearning method's grid. A run takes seconds; a job's fixed
# cost (starting Python, importing torch, loading and evaluating the checkpoint) is larger, so it is
# paid once per checkpoint. Each method still has its own CSV (ask for one by its path), and every
# finished (cell, seed) is cached under _resume/, so a restarted job redoes only what was missing.
rule unlearn:
    input:
        checkpoints="results/{run}/models/{model}/checkpoints",
        data=get_model_data,
    output:
        expand("results/{{run}}/unlearn/{{model}}/epoch{{epoch}}/{method}.csv", method=UNLEARN_METHODS),
    params:
        methods=UNLEARN_METHODS,
        grid=get_unlearn_params,
        cache_dir="results/{run}/_resume/unlearn/{model}/epoch{epoch}",
    log:
        "results/{run}/logs/unlearn/{model}/epoch{epoch}.log",
    benchmark:
        "results/{run}/benchmarks/unlearn/{model}/epoch{epoch}.tsv"
    threads: 2
    resources:
        runtime=get_runtime("unlearn"),
        mem_mb=get_mem_mb("unlearn"),
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/unlearn.py"
