rule unlearning_table:
    input:
        get_unlearn_results,
    output:
        best=report(
            "results/{run}/tables/{kind}_unlearning.csv",
            caption="report/unlearning.rst",
            category="Tables",
            labels={"table": "{kind} unlearning (best runs)"},
        ),
        markdown="results/{run}/tables/{kind}_unlearning.md",
        runs="results/{run}/tables/{kind}_unlearning_runs.csv",
    log:
        "results/{run}/logs/tables/{kind}_unlearning.log",
    localrule: True
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/unlearning_table.py"


rule training_table:
    input:
        get_histories,
    output:
        report(
            "results/{run}/tables/{kind}_training.csv",
            caption="report/training.rst",
            category="Tables",
            labels={"table": "{kind} training"},
        ),
    log:
        "results/{run}/logs/tables/{kind}_training.log",
    localrule: True
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/training_table.py"


rule mitigations_table:
    input:
        histories=get_histories,
        finetune=get_finetune_results,
        unlearning="results/{run}/tables/{kind}_unlearning.csv",
    output:
        csv=report(
            "results/{run}/tables/{kind}_mitigations.csv",
            caption="report/mitigations.rst",
            category="Tables",
            labels={"table": "{kind} mitigations"},
        ),
        markdown="results/{run}/tables/{kind}_mitigations.md",
    log:
        "results/{run}/logs/tables/{kind}_mitigations.log",
    localrule: True
    conda:
        "../envs/tinymem.yaml"
    script:
        "../workflow_scripts/mitigations_table.py"
