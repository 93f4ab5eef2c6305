rule train:
    input:
        data=get_model_data,
    output:
        checkpoints=directory("results/{run}/models/{model}/checkpoints"),
        history="results/{run}/models/{model}/history.csv",
    params:
        arch=get_model_arch,
        train=get_train_params,
        objective=get_objective,
        labels=get_model_labels,
        resume_dir="results/{run}/_resume/train/{model}",
    log:
        "results/{run}/logs/train/{model}.log",
    benchmark:
        "results/{run}/benchmarks/train/{model}.tsv"
    threads: 2
    resources:
        runtime=get_runtime("train"),
        mem_mb=get_mem_mb("train"),
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/train.py"


rule finetune:
    input:
        checkpoints="results/{run}/models/{model}/checkpoints",
        data=get_model_data,
    output:
        "results/{run}/finetune/{model}/{variant}.csv",
    params:
        cfg=get_finetune_params,
        epoch=get_last_label,
        resume_dir="results/{run}/_resume/finetune/{model}/{variant}",
    log:
        "results/{run}/logs/finetune/{model}/{variant}.log",
    benchmark:
        "results/{run}/benchmarks/finetune/{model}/{variant}.tsv"
    threads: 2
    resources:
        runtime=get_runtime("finetune"),
        mem_mb=get_mem_mb("finetune"),
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/finetune.py"
