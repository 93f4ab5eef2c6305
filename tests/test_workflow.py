"""The real DAG on tiny data, through the Snakemake CLI (style §4: a tiny config runs the real DAG)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from workflow_utils import SNAKEMAKE, TINY, copy_workflow, planned_jobs, snakemake

pytestmark = pytest.mark.workflow

NOISE_MODEL = "increment-noise-x40-s0-L2"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """The whole tiny DAG, run once for this module."""
    wd = copy_workflow(tmp_path_factory.mktemp("wf"))
    snakemake(wd, "--cores", "2", "--configfile", TINY)
    return wd


def test_tiny_dag_end_to_end(tiny_run):
    table = pd.read_csv(tiny_run / "results/tiny/tables/math_unlearning.csv")
    noise = table[(table.method == "balanced_subnet") & (table.artifact == "noise")].iloc[0]
    assert noise.percent_mem_before >= 20.0  # the tiny model memorized
    assert noise.percent_mem_after < noise.percent_mem_before
    assert 0.3 < noise.acc_after <= 1.0 and 0.3 < noise.acc_before <= 1.0
    assert noise.frac_changed == pytest.approx(0.1, abs=1e-3)
    assert noise.seconds > 0 and noise.n_models == 1
    runs = pd.read_csv(tiny_run / "results/tiny/tables/math_unlearning_runs.csv")
    assert {"git_hash", "param_ratio", "n_forget", "percent_mem_group0_after"} - set(runs.columns) <= {"percent_mem_group0_after"}
    md = (tiny_run / "results/tiny/tables/math_unlearning.md").read_text()
    assert "BalancedSubnet" in md
    mitigations = pd.read_csv(tiny_run / "results/tiny/tables/math_mitigations.csv")
    from tinymem.mitigations.unlearning import REGISTRY

    noise_rows = mitigations[mitigations.artifact == "noise"]
    assert set(noise_rows.method) == set(REGISTRY) | {"spectral_norm", "loss_truncation", "example_tied_dropout",
                                                      "finetune_clean", "finetune_extra", "finetune_both"}
    assert noise_rows[["percent_mem_before", "percent_mem_after", "acc_before", "acc_after", "seconds"]].notna().all().all()
    ft = noise_rows.set_index("method").loc["finetune_clean"]
    assert ft.percent_mem_after < ft.percent_mem_before  # training on the clean twins overwrites the noise
    training = pd.read_csv(tiny_run / "results/tiny/tables/math_training.csv")
    assert set(training.artifact) == {"noise", "backdoor"}
    assert training.set_index("artifact").loc["backdoor", "percent_mem"] > 0  # backdoor learned
    # Logs and benchmarks per job.
    assert (tiny_run / f"results/tiny/logs/train/{NOISE_MODEL}.log").read_text()
    assert (tiny_run / f"results/tiny/benchmarks/train/{NOISE_MODEL}.tsv").exists()


def test_complete_run_has_nothing_to_do(tiny_run):
    assert planned_jobs(tiny_run, "--configfile", TINY) == {}


def test_restarted_sweep_reruns_only_what_is_missing(tiny_run):
    """A sweep stopped after training, before one checkpoint's unlearning and the tables: the
    restart runs exactly those jobs, and the unlearning job takes its cells from the cache."""
    lost = tiny_run / f"results/tiny/unlearn/{NOISE_MODEL}/epoch60/balanced_subnet.csv"
    before = pd.read_csv(lost)
    lost.unlink()
    for table in (tiny_run / "results/tiny/tables").glob("math_*"):
        if "training" not in table.name:
            table.unlink()
    plan = planned_jobs(tiny_run, "--configfile", TINY)
    assert plan == {"unlearn": 1, "unlearning_table": 1, "mitigations_table": 1, "all": 1}
    snakemake(tiny_run, "--cores", "2", "--configfile", TINY)
    # Every cell came from the cache (same measured seconds); the run is complete again.
    pd.testing.assert_frame_equal(pd.read_csv(lost), before)
    assert planned_jobs(tiny_run, "--configfile", TINY) == {}


def test_single_target_by_path(tiny_run):
    target = "results/tiny/tables/math_training.csv"
    (tiny_run / target).unlink()
    # Targets go before --configfile, which takes every following word as a config file.
    assert planned_jobs(tiny_run, target, "--configfile", TINY) == {"training_table": 1}
    snakemake(tiny_run, target, "--cores", "2", "--configfile", TINY)
    assert (tiny_run / target).exists()


def test_report(tiny_run):
    snakemake(tiny_run, "--configfile", TINY, "--report", "report.html")
    html = (tiny_run / "report.html").read_text(errors="ignore")
    assert "math_unlearning.csv" in html


def test_truncated_checkpoint_fails_clearly_and_keeps_every_other_result(tiny_run):
    ckpt = tiny_run / f"results/tiny/models/{NOISE_MODEL}/checkpoints/epoch60.pt"
    target = tiny_run / f"results/tiny/unlearn/{NOISE_MODEL}/epoch60/zero_out.csv"
    job_outputs = target.parent  # the failed job's declared outputs: every method's CSV of this checkpoint
    others = {p: p.stat().st_mtime_ns for p in (tiny_run / "results/tiny").rglob("*.csv") if p.parent != job_outputs}
    raw = ckpt.read_bytes()
    target.unlink()
    try:
        ckpt.write_bytes(raw[: len(raw) // 2])
        proc = snakemake(tiny_run, str(target.relative_to(tiny_run)), "--cores", "1", "--configfile", TINY,
                         check=False)
        assert proc.returncode != 0
        log = (tiny_run / f"results/tiny/logs/unlearn/{NOISE_MODEL}/epoch60.log").read_text()
        assert "CorruptFileError" in log and str(ckpt.relative_to(tiny_run)) in log
        assert not target.exists()
        assert {p: p.stat().st_mtime_ns for p in others} == others  # nothing else touched
    finally:
        ckpt.write_bytes(raw)
    # The rerun rebuilds the job's CSVs from the cells cached before the failure.
    snakemake(tiny_run, str(target.relative_to(tiny_run)), "--cores", "1", "--configfile", TINY)
    assert target.exists() and len(list(job_outputs.glob("*.csv"))) == 14


def test_bad_config_fails_before_any_job(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    bad = (wd / TINY).read_text().replace("num_noise: 40", "num_noize: 40")
    (wd / "bad.yaml").write_text(bad)
    proc = snakemake(wd, "--cores", "1", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "num_noize" in proc.stdout + proc.stderr
    assert not (wd / "results").exists()


def test_paper_dry_run_lists_the_grid(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    plan = planned_jobs(wd)
    assert plan["math_data"] == 36  # families × artifacts × num_extra × seeds (training.md §9.1)
    assert plan["language_data"] == 6  # wikitext-103: 2 artifacts × 3 seeds
    base = 144 + 24  # math: 36 data × 4 depths; language: 6 data × 4 depths
    assert plan["train"] == base + 84  # + 7 regularizer cells × (mult, language) × 2 artifacts × 3 seeds (§9.2)
    assert plan["finetune"] == 54  # 3 variants × 3 families × 2 artifacts × 3 seeds (§9.3, Q18)
    assert plan["unlearn"] == base * 4  # 4 checkpoints per model; one job runs all 14 methods' grids


def test_killed_training_job_resumes_from_checkpoint(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    target = f"results/tiny/models/{NOISE_MODEL}/history.csv"
    resume = wd / f"results/tiny/_resume/train/{NOISE_MODEL}"
    proc = subprocess.Popen([*SNAKEMAKE, target, "--cores", "2", "--configfile", TINY], cwd=wd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(resume.glob("state_e*.pt")):  # the epoch-0 state (label 0) is written early
        assert proc.poll() is None, "training finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (wd / target).exists()
    snakemake(wd, "--unlock", "--configfile", TINY)
    snakemake(wd, target, "--cores", "2", "--rerun-incomplete", "--configfile", TINY)
    log = (wd / f"results/tiny/logs/train/{NOISE_MODEL}.log").read_text()
    assert "resumed from" in log
    hist = pd.read_csv(wd / target)
    assert hist.epoch.tolist() == list(range(61))
