rule math_data:
    wildcard_constraints:
        data=_alternatives(MATH_DATA),
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
        runtime=get_runtime("math_data"),
        mem_mb=get_mem_mb("math_data"),
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/math_data.py"


# Language data: the paper's corpus comes from the Hugging Face hub (datasets.load_dataset) and its
# GPT-2 tokenizer from from_pretrained; the quick config builds both offline (stdlib prose, BPE).
rule language_data:
    wildcard_constraints:
        data=_alternatives(LANGUAGE_DATA),
    output:
        data="results/{run}/data/{data}.pt",
        tokenizer=directory("results/{run}/data/{data}.tokenizer"),
    params:
        cfg=get_language_data_params,
    log:
        "results/{run}/logs/language_data/{data}.log",
    benchmark:
        "results/{run}/benchmarks/language_data/{data}.tsv"
    threads: 2
    resources:
        runtime=get_runtime("language_data"),
        mem_mb=get_mem_mb("language_data"),
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/language_data.py"
