rule math_data:
    output:
        "results/{run}/data/{data}.pt",
    params:
        cfg=get_math_data_params,
    log:
        "results/{run}/logs/math_data/{data}.log",
    benchmark:
        "results/{run}/benchmarks/math_data/{data}.tsv"
    threads: 1
    resources:
        runtime=get_runtime(30),
        mem_mb=4000,
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/math_data.py"
