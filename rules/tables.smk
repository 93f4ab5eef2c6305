rule math_unlearning_table:
    input:
        get_unlearn_results("math"),
    output:
        best=report(
            "results/{run}/tables/math_unlearning.csv",
            caption="report/math_unlearning.rst",
            category="Tables",
            labels={"table": "math unlearning (best runs)"},
        ),
        markdown="results/{run}/tables/math_unlearning.md",
        runs="results/{run}/tables/math_unlearning_runs.csv",
    log:
        "results/{run}/logs/tables/math_unlearning.log",
    localrule: True
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/unlearning_table.py"


rule math_training_table:
    input:
        get_histories("math"),
    output:
        report(
            "results/{run}/tables/math_training.csv",
            caption="report/math_training.rst",
            category="Tables",
            labels={"table": "math training"},
        ),
    log:
        "results/{run}/logs/tables/math_training.log",
    localrule: True
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/training_table.py"


rule math_mitigations_table:
    input:
        histories=get_histories("math"),
        finetune=get_finetune_results("math"),
        unlearning="results/{run}/tables/math_unlearning.csv",
    output:
        csv=report(
            "results/{run}/tables/math_mitigations.csv",
            caption="report/math_mitigations.rst",
            category="Tables",
            labels={"table": "math mitigations (all families)"},
        ),
        markdown="results/{run}/tables/math_mitigations.md",
    log:
        "results/{run}/logs/tables/math_mitigations.log",
    localrule: True
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/mitigations_table.py"
