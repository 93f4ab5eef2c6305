"""The workflow through the real SLURM executor on a one-node test cluster (slurmctld + slurmd here).

The module fixture runs ``tests/slurm/setup_cluster.sh`` (installs slurm-wlm + munge with apt-get
when missing, writes slurm.conf, starts the daemons) and keeps the cluster up for the whole module:
with the SLURM client tools installed and no controller answering, every ``snakemake`` start waits
~9 s in the plugin's ``scontrol show config``. Teardown stops what the fixture started.

Runs use ``--profile profiles/slurm`` plus the flags a one-node, CPU-only test cluster needs
(:func:`slurm_flags`). A command-line ``--set-resources`` or ``--default-resources`` replaces the
profile's whole map, so the profile's per-rule resources are passed again, minus the GPU keys: the
profile itself keeps asking GPUs (checked by the first test).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_utils import ROOT, SNAKEMAKE, TINY, copy_workflow, snakemake

pytestmark = pytest.mark.slurm

NOISE_MODEL = "increment-noise-x40-s0-L2"
PROFILE = ROOT / "profiles/slurm/profile.yaml"
# Resource keys that ask for GPUs: dropped for the CPU-only test node.
GPU_KEYS = {"gpu", "gpu_model", "gres", "cpus_per_gpu", "tasks_per_gpu"}
MEM_RULES = ("math_data", "language_data", "train", "finetune", "unlearn")  # rules asking 4-16 GB
# "Job 3 has been submitted with SLURM jobid 32 (log: .../slurm_logs/rule_math_data/...)";
# group jobs log under slurm_logs/group_<group>_<rules>/.
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S*/slurm_logs/(?:rule|group)_(\w+)/\S*?)\)\.")
# The unlearning methods the SLURM run keeps (each unlearn job costs ~10 s of start-up here).
METHODS = ("balanced_subnet", "zero_out", "ga_gd", "random_mask")


def _sh(*cmd: str, timeout: int = 30) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout


def _controller_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    try:
        return "UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False


def slurm_flags(node_cpus: int) -> list[str]:
    """The command-line flags a one-node, CPU-only test cluster needs on top of the profile."""
    prof = yaml.safe_load(PROFILE.read_text())
    set_resources = []
    for rule, res in (prof.get("set-resources") or {}).items():
        for key, value in res.items():
            if key not in GPU_KEYS and key not in ("slurm_partition", "mem_mb"):
                set_resources.append(f"{rule}:{key}={value}")  # e.g. train:slurm_extra='--signal=TERM@300'
        if GPU_KEYS & set(res):
            set_resources.append(f"{rule}:gpu=0")
    set_resources += [f"{rule}:mem_mb=1000" for rule in MEM_RULES]
    return [
        "--profile", "profiles/slurm",
        "--slurm-no-account",  # no accounts (no slurmdbd)
        "--slurm-status-command", "squeue",  # no sacct without slurmdbd; MinJobAge=3600 keeps jobs in squeue
        "--slurm-init-seconds-before-status-checks", "5",  # default 40 s
        "--jobs", "2",
        # Jobs must fit the node: their threads are capped by --cores.
        "--cores", str(node_cpus),
        # Replaces the profile's whole default-resources map: partition, runtime, memory.
        "--default-resources", "slurm_partition=debug", "runtime=30", "mem_mb=1000",
        # Replaces the profile's whole set-resources map: the same without GPUs, and memory that
        # fits any host (sbatch rejects --mem above the node's RealMemory).
        "--set-resources", *set_resources,
    ]


@pytest.fixture(scope="module")
def flags():
    """A running one-node cluster (started here, stopped after the module, unless already up);
    yields the snakemake flags for it."""
    started = False
    if not _controller_up():
        proc = subprocess.run(["bash", str(ROOT / "tests/slurm/setup_cluster.sh")], capture_output=True, text=True,
                              timeout=900)
        out = (proc.stdout + proc.stderr).strip()
        if proc.returncode == 2:  # cannot install: not root, no apt-get, no package registry
            pytest.skip(f"no SLURM test cluster: {out.splitlines()[-1] if out else 'setup exited 2'}")
        assert proc.returncode == 0, f"tests/slurm/setup_cluster.sh failed ({proc.returncode}):\n{out}"
        started = True
    node_cpus = int(_sh("sinfo", "--noheader", "--partition=debug", "--format=%c").split()[0].rstrip("+"))
    try:
        yield slurm_flags(node_cpus)
    finally:
        if started:
            subprocess.run(["bash", str(ROOT / "tests/slurm/teardown_cluster.sh")], capture_output=True, timeout=120)


def submitted(out: str) -> list[tuple[str, str, str]]:
    """(SLURM jobid, rule or group name, SLURM log path) of each submission in snakemake's output."""
    return [(jid, rule, log) for jid, log, rule in SUBMITTED.findall(out)]


def keep_methods(wd: Path, methods) -> None:
    """Trim the unlearning grid in the copy's configs (--configfile merges into config/config.yaml)."""
    for rel in ("config/config.yaml", TINY):
        cfg = yaml.safe_load((wd / rel).read_text())
        if "methods" in cfg.get("unlearning", {}):
            cfg["unlearning"]["methods"] = {m: a for m, a in cfg["unlearning"]["methods"].items() if m in methods}
        (wd / rel).write_text(yaml.safe_dump(cfg, sort_keys=False))


def job_states(jobids) -> dict[str, tuple[str, str]]:
    """SLURM jobid -> (state, comment) from squeue (finished jobs stay listed for MinJobAge)."""
    out = _sh("squeue", "--states=all", "--noheader", "--format=%i|%T|%k", "--jobs", ",".join(jobids))
    return {i: (s, c) for i, s, c in (line.split("|", 2) for line in out.splitlines() if line.strip())}


def test_profile_asks_gpus_for_training_and_unlearning():
    prof = yaml.safe_load(PROFILE.read_text())
    assert prof["executor"] == "slurm"
    for rule in ("train", "finetune", "unlearn"):
        assert prof["set-resources"][rule]["gpu"] >= 1
    for rule in ("train", "finetune"):  # resumable jobs get a signal before the time limit
        assert re.search(r"--signal=TERM@\d+", prof["set-resources"][rule]["slurm_extra"])
    # CPU rules ask for no GPU (gres is rejected in slurm_extra by the plugin anyway).
    assert not {"math_data", "language_data"} & set(prof["set-resources"])
    assert "gpu" not in prof["default-resources"]


def test_tiny_workflow_under_slurm(flags, tmp_path):
    """Data, training and the unlearning table of the tiny config (4 of its 14 unlearning
    methods, on its 2 checkpoints), every job a real SLURM job."""
    wd = copy_workflow(tmp_path / "wf")
    keep_methods(wd, METHODS)
    target = "results/tiny/tables/math_unlearning.csv"
    t0 = time.monotonic()
    proc = snakemake(wd, target, "--configfile", TINY, *flags, timeout=600)
    out = proc.stdout + proc.stderr  # the plugin logs to stderr
    elapsed = time.monotonic() - t0
    jobs = submitted(out)
    rules = [rule for _, rule, _ in jobs]
    assert rules.count("math_data") == 2 and rules.count("train") == 2, out[-3000:]
    assert rules.count("unlearn") == 2, rules  # one job per checkpoint runs every method's grid
    states = job_states([jid for jid, _, _ in jobs])
    assert len(states) == len(jobs)
    assert {s for s, _ in states.values()} == {"COMPLETED"}, states
    assert f"rule_train_wildcards_tiny_{NOISE_MODEL}" in {c for _, c in states.values()}

    table = pd.read_csv(wd / target)
    cols = ["percent_mem_before", "percent_mem_after", "acc_before", "acc_after", "seconds"]
    assert set(table.method) == set(METHODS) and set(table.artifact) == {"noise", "backdoor"}
    assert table[cols].notna().all().all()
    noise = table[(table.method == "balanced_subnet") & (table.artifact == "noise")].iloc[0]
    assert noise.percent_mem_before >= 20.0  # the tiny model memorized under SLURM too
    assert noise.percent_mem_after < noise.percent_mem_before
    assert 0.3 < noise.acc_after <= 1.0
    print(f"SLURM tiny run: {len(jobs)} SLURM jobs in {elapsed:.0f} s")
    # A second call finds nothing to do and submits nothing.
    again = snakemake(wd, target, "--configfile", TINY, *flags, timeout=300)
    assert not SUBMITTED.search(again.stdout + again.stderr)


def test_preempted_training_resumes_on_retry(flags, tmp_path):
    """The profile's pre-timeout signal, sent with scancel, stops training with a mid-epoch state;
    the profile's retry (a new sbatch) resumes from it and finishes."""
    wd = copy_workflow(tmp_path / "wf")
    cfg = yaml.safe_load((wd / TINY).read_text())
    cfg["training"]["math_noise"].update(epochs=100, checkpoint_every=50, unlearn_epochs=[100])
    (wd / "preempt.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    extra = yaml.safe_load(PROFILE.read_text())["set-resources"]["train"]["slurm_extra"]
    signame = re.search(r"--signal=(?:B:)?(\w+)@", extra).group(1)  # what SLURM sends before the limit

    target = f"results/tiny/models/{NOISE_MODEL}/history.csv"
    resume = wd / f"results/tiny/_resume/train/{NOISE_MODEL}"
    out_path = tmp_path / "snakemake.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen([*SNAKEMAKE, target, "--configfile", "preempt.yaml", *flags], cwd=wd,
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 300
        while not any(resume.glob("state_e*.pt")):  # training is under way (the epoch-0 state)
            assert proc.poll() is None, out_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no training state after 300 s"
            time.sleep(0.2)
        jobid = next(j for j, rule, _ in submitted(out_path.read_text()) if rule == "train")
        _sh("scancel", f"--signal={signame}", jobid)  # to all steps of the job, as --signal does

        mid_epoch = None
        deadline = time.monotonic() + 120
        while mid_epoch is None:
            mid_epoch = next((p for p in resume.glob("state_e*_s*.pt") if not p.name.endswith("_s0000000.pt")), None)
            assert mid_epoch or proc.poll() is None, out_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no mid-epoch state after SIG{signame}: {sorted(resume.iterdir())}"
            time.sleep(0.1)
        deadline = time.monotonic() + 120
        while job_states([jobid])[jobid][0] in ("PENDING", "RUNNING", "COMPLETING"):
            assert time.monotonic() < deadline, "the signalled job did not end"
            time.sleep(1)
        assert job_states([jobid])[jobid][0] == "FAILED"  # exit 75: the retry is a new sbatch
        assert proc.wait(timeout=600) == 0, out_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:  # a failed assertion: stop the run and its SLURM jobs
            proc.send_signal(signal.SIGINT)  # SIGTERM would wait for the running jobs
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            ids = [j for j, _, _ in submitted(out_path.read_text())]
            if ids:
                subprocess.run(["scancel", *ids], capture_output=True, timeout=30)
    train_jobs = [(j, log) for j, rule, log in submitted(out_path.read_text()) if rule == "train"]
    assert [j for j, _ in train_jobs][0] == jobid and len(train_jobs) == 2
    assert job_states([train_jobs[1][0]])[train_jobs[1][0]][0] == "COMPLETED"
    # The failed job's SLURM log is kept: its step exited (75 -> 1) instead of dying of the signal.
    first_log = Path(train_jobs[0][1]).read_text(errors="replace")
    assert "task 0: Exited with exit code" in first_log, first_log[-2000:]
    # Snakemake truncates the rule log for the retry: it shows the resume from that very state.
    rule_log = (wd / f"results/tiny/logs/train/{NOISE_MODEL}.log").read_text(errors="replace")
    assert f"resumed from results/tiny/_resume/train/{NOISE_MODEL}/{mid_epoch.name}" in rule_log
    hist = pd.read_csv(wd / target)
    assert hist.epoch.tolist() == list(range(101))
