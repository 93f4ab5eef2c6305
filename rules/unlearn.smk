# One job per (checkpoint, method) runs the method's whole grid: runs are seconds long, so the
# checkpoint and data are loaded once; finished cells are cached under _resume/ for restarts.
rule unlearn:
    input:
        checkpoints="results/{run}/models/{model}/checkpoints",
        data=get_model_data,
    output:
        "results/{run}/unlearn/{model}/epoch{epoch}/{method}.csv",
    params:
        grid=get_unlearn_params,
        cache_dir="results/{run}/_resume/unlearn/{model}/epoch{epoch}/{method}",
    log:
        "results/{run}/logs/unlearn/{model}/epoch{epoch}/{method}.log",
    benchmark:
        "results/{run}/benchmarks/unlearn/{model}/epoch{epoch}/{method}.tsv"
    threads: 2
    resources:
        runtime=get_runtime(120),
        mem_mb=8000,
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/unlearn.py"
