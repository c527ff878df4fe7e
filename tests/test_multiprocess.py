"""Multi-host training proven on one machine: 2 processes × 4 CPU devices (a local coordinator,
gloo collectives) train the tiny StyleGAN2 to the same parameters as 1 process × 8 devices; plus
the distributed start-up and the local launcher's failure handling."""

import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from stylejax import main as stylejax_main

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "multiprocess_driver.py"
LAUNCHER = ROOT / "launch" / "local.py"
TPU_POD = ROOT / "launch" / "tpu_pod.sh"
SLURM = ROOT / "launch" / "slurm.sbatch"
STEPS = 3


def _log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_two_processes_train_like_one_process(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    # XLA optimisations off: compiles ~3× faster, and both runs compile the same way.
    common = [f"--steps={STEPS}", "--unoptimized"]
    # The 1-process run may use the persistent cache of the other tests (conftest.py); the
    # 2-process run must not: reruns reading its entries have hung in a collective (gloo).
    cache = jax.config.jax_compilation_cache_dir or tmp_path / "cache"
    one_log, two_log = tmp_path / "one.log", tmp_path / "two.log"
    t0 = time.perf_counter()
    # One after the other: gloo gives a process 30 s to join each new collective, which a
    # process starved of CPU by a concurrent run can miss on a small machine.
    with open(one_log, "w") as out:
        one = subprocess.run(
            [sys.executable, str(DRIVER), f"--workdir={tmp_path / 'one'}"]
            + [f"--out={tmp_path / 'one.npz'}", f"--compilation_cache={cache}", *common],
            env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=8"),
            check=False,
            timeout=300,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    with open(two_log, "w") as out:
        two = subprocess.run(
            [sys.executable, str(LAUNCHER), "--num_processes=2", "--devices_per_process=4"]
            + ["--timeout=300", "--", sys.executable, str(DRIVER), f"--workdir={tmp_path / 'two'}"]
            + [f"--out={tmp_path / 'two_{process}.npz'}", *common],
            env=env,
            check=False,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    print(f"1-process and 2-process runs: {time.perf_counter() - t0:.1f} s")
    assert one.returncode == 0, f"1-process run failed:\n{_log_tail(one_log)}"
    assert two.returncode == 0, f"2-process run failed:\n{_log_tail(two_log)}"
    log = two_log.read_text()
    assert "[0] process 0/2: saved" in log and "[1] process 1/2: saved" in log, _log_tail(two_log)

    want = np.load(tmp_path / "one.npz")
    assert int(want["['step']"]) == STEPS
    for process in (0, 1):
        got = np.load(tmp_path / f"two_{process}.npz")
        assert sorted(got.files) == sorted(want.files)
        for name in want.files:
            # Bit-identical is not expected: the cross-process all-reduces (gloo) sum the
            # per-device gradients in another order than the in-process ones. After 3 steps
            # the largest difference seen was 4.8e-7 on weights of magnitude 4 (1 ulp).
            np.testing.assert_allclose(
                got[name],
                want[name],
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"process {process} of 2, {name} vs 1 process × 8 devices",
            )


# ----------------------------------------------------------------------------- start-up


@pytest.fixture
def initialize_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(stylejax_main.jax.distributed, "initialize", lambda **kw: calls.append(kw))
    return calls


def test_single_process_does_not_initialize(initialize_calls):
    assert stylejax_main.maybe_initialize_distributed({}) is False
    assert stylejax_main.maybe_initialize_distributed({"STYLEJAX_DISTRIBUTED": "0"}) is False
    assert initialize_calls == []


def test_explicit_coordinator_is_passed_on(initialize_calls):
    env = {
        "STYLEJAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
        "STYLEJAX_NUM_PROCESSES": "4",
        "STYLEJAX_PROCESS_ID": "3",
    }
    assert stylejax_main.maybe_initialize_distributed(env) is True
    assert initialize_calls == [
        {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    ]


def test_auto_detection_calls_initialize_without_arguments(initialize_calls):
    assert stylejax_main.maybe_initialize_distributed({"STYLEJAX_DISTRIBUTED": "1"}) is True
    assert initialize_calls == [{}]


def test_incomplete_environment_names_what_is_missing(initialize_calls):
    env = {"STYLEJAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "STYLEJAX_NUM_PROCESSES": "2"}
    with pytest.raises(ValueError, match="STYLEJAX_PROCESS_ID is not"):
        stylejax_main.maybe_initialize_distributed(env)
    with pytest.raises(ValueError, match="expected 1/true or 0/false"):
        stylejax_main.maybe_initialize_distributed({"STYLEJAX_DISTRIBUTED": "yes please"})
    assert initialize_calls == []


# ----------------------------------------------------------------------------- launcher


def _run(argv, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _launch(*args):
    return _run([sys.executable, LAUNCHER, *args])


def test_launcher_sets_environment_and_prefixes_output():
    code = (
        "import os; print(os.environ['STYLEJAX_PROCESS_ID'], os.environ['STYLEJAX_NUM_PROCESSES'],"
        " os.environ['STYLEJAX_COORDINATOR_ADDRESS'].split(':')[0], os.environ['XLA_FLAGS'])"
    )
    result = _launch(
        "--num_processes=3", "--devices_per_process=2", "--", sys.executable, "-c", code
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = sorted(result.stdout.splitlines())
    flag = "--xla_force_host_platform_device_count=2"
    assert lines == [f"[{i}] {i} 3 127.0.0.1 {flag}" for i in range(3)]


def test_launcher_stops_the_others_when_one_fails():
    code = (
        "import os, sys, time\n"
        "if os.environ['STYLEJAX_PROCESS_ID'] == '1': sys.exit(3)\n"
        "time.sleep(60)\n"
    )
    t0 = time.perf_counter()
    result = _launch("--num_processes=2", "--", sys.executable, "-c", code)
    assert result.returncode == 3
    assert "process 1 exited with 3" in result.stdout
    assert time.perf_counter() - t0 < 30, "the sleeping process was not stopped"


def test_launcher_timeout_stops_everything():
    result = _launch(
        "--num_processes=2",
        "--timeout=1",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(60)",
    )
    assert result.returncode == 124
    assert "timeout after 1 s" in result.stdout


# ----------------------------------------------------------------------------- cluster scripts
# The cluster tools (gcloud, scontrol, srun) are replaced by small fakes on PATH, and `python`
# by one that prints what it was started with, to check the scripts' plumbing end to end.

PRINT_ARGS_AND_ENV = """#!/usr/bin/env bash
echo "args:$(printf ' [%s]' "$@")"
for v in STYLEJAX_DISTRIBUTED STYLEJAX_COORDINATOR_ADDRESS STYLEJAX_NUM_PROCESSES \\
    STYLEJAX_PROCESS_ID; do echo "$v=${!v:-}"; done
"""


def _fake_tools(tmp_path, **scripts) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", HOME=str(tmp_path))


def test_tpu_pod_run_starts_the_command_on_all_workers(tmp_path):
    # The fake gcloud runs --command= in a shell, as each worker's ssh would.
    gcloud = """#!/usr/bin/env bash
echo "$*" >> "$HOME/gcloud_calls"
for a in "$@"; do case "$a" in --command=*) bash -c "${a#--command=}";; esac; done
"""
    remote = tmp_path / "remote"
    remote.mkdir()
    env = _fake_tools(tmp_path, gcloud=gcloud, python3=PRINT_ARGS_AND_ENV)
    env.update(TPU_NAME="pod", ZONE="us-west4-a", REMOTE_DIR=str(remote))
    result = _run(
        [TPU_POD, "run", "--config=configs/stylegan2.py:ffhq1024", "--workdir=gs://b/run 1"], env
    )
    assert result.returncode == 0, result.stderr
    assert (
        "args: [-m] [stylejax.main] [--config=configs/stylegan2.py:ffhq1024] [--workdir=gs://b/run 1]\n"
        in (result.stdout)
    )
    assert "STYLEJAX_DISTRIBUTED=1\n" in result.stdout
    assert (
        (tmp_path / "gcloud_calls")
        .read_text()
        .startswith("compute tpus tpu-vm ssh pod --zone=us-west4-a --worker=all --command=")
    )
    assert "STYLEJAX_DISTRIBUTED=1" in (tmp_path / "stylejax.log").read_text()


def test_tpu_pod_script_names_missing_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE")}
    result = _run([TPU_POD, "run"], env)
    assert result.returncode != 0
    assert "TPU_NAME" in result.stderr


def test_slurm_script_gives_each_task_the_coordinator_and_its_rank(tmp_path):
    scontrol = "#!/usr/bin/env bash\nprintf 'gpu-node-7\\ngpu-node-8\\n'\n"
    # A fake srun: drops its options and runs the task command once per rank.
    srun = """#!/usr/bin/env bash
while [[ "$1" == --* ]]; do shift; done
for ((rank = 0; rank < SLURM_NTASKS; rank++)); do SLURM_PROCID=$rank "$@"; done
"""
    env = _fake_tools(tmp_path, scontrol=scontrol, srun=srun, python=PRINT_ARGS_AND_ENV)
    env.update(SLURM_JOB_NODELIST="gpu-node-[7-8]", SLURM_JOB_ID="12345", SLURM_NTASKS="2")
    result = _run(["bash", SLURM, "--config=configs/stylegan2.py", "--workdir=/shared/run 1"], env)
    assert result.returncode == 0, result.stderr
    port = 20000 + 12345 % 20000
    for rank in (0, 1):
        assert (
            "args: [-m] [stylejax.main] [--config=configs/stylegan2.py] [--workdir=/shared/run 1]\n"
            "STYLEJAX_DISTRIBUTED=\n"
            f"STYLEJAX_COORDINATOR_ADDRESS=gpu-node-7:{port}\n"
            "STYLEJAX_NUM_PROCESSES=2\n"
            f"STYLEJAX_PROCESS_ID={rank}\n"
        ) in result.stdout
