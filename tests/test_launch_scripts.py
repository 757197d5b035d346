"""The launchers: `--dry_run` prints the exact gcloud / sbatch / srun commands and runs nothing;
with stand-in `gcloud` and `srun` programs the TPU launcher recreates a preempted Spot slice and
reruns the command, and the SLURM launcher gives every task the process group t0jax reads."""

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TPU = str(ROOT / "launch" / "tpu_pod.sh")
GPU = str(ROOT / "launch" / "gpu_slurm.sh")
TRAIN_3B = [
  "t0jax",
  "train",
  "--gin_file=gin/experiments/t0_3b.gin",
  "--model_dir=/mnt/t0/runs/t0_3b",
  '--gin.INITIAL_CHECKPOINT_PATH="/mnt/t0/t5-xl"',
]


def _tool(bin_dir: Path, name: str, body: str) -> None:
  path = bin_dir / name
  path.write_text("#!/usr/bin/env bash\n" + body)
  path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_bin(tmp_path):
  """A PATH entry whose gcloud, sbatch and srun only record that they were called."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name in ("gcloud", "sbatch", "srun"):
    _tool(bin_dir, name, f'echo "{name} $*" >> "{tmp_path}/called"\n')
  return bin_dir


def _run(script, *args, bin_dir=None, env=None, timeout=60):
  full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  if bin_dir:
    full_env["PATH"] = f"{bin_dir}:{full_env['PATH']}"
  full_env.update(env or {})
  return subprocess.run(
    ["bash", script, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT
  )


def _commands(stdout: str):
  return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def test_tpu_dry_run_prints_create_install_and_run_on_all_workers_and_runs_nothing(
  fake_bin, tmp_path
):
  r = _run(
    TPU,
    "--name",
    "t0-3b",
    "--zone",
    "us-central2-b",
    "--accelerator_type",
    "v4-128",
    "--project",
    "my-proj",
    "--dry_run",
    "--",
    *TRAIN_3B,
    bin_dir=fake_bin,
  )
  assert r.returncode == 0, r.stderr
  cmds = _commands(r.stdout)
  where = "--zone=us-central2-b --project=my-proj"
  assert cmds[0] == (
    f"gcloud compute tpus tpu-vm describe t0-3b {where} "
    "--format='value(state)' >/dev/null 2>&1 || gcloud compute tpus tpu-vm create"
    f" t0-3b {where} --accelerator-type=v4-128 --version=tpu-ubuntu2204-base"
  )
  assert cmds[1].startswith(f"git -C '{ROOT}' archive --format=tar.gz")
  assert cmds[2] == (
    f"gcloud compute tpus tpu-vm scp /tmp/t0jax-t0-3b.tar.gz t0-3b:t0jax.tar.gz "
    f"{where} --worker=all"
  )
  assert f"ssh t0-3b {where} --worker=all" in cmds[3] and '"jax[tpu]>=0.10.2,<0.11"' in cmds[3]
  assert cmds[-1] == (
    f"gcloud compute tpus tpu-vm ssh t0-3b {where} --worker=all "
    "--command='cd $HOME/t0jax && source .venv/bin/activate && export "
    "TF_CPP_MIN_LOG_LEVEL=2 && t0jax train --gin_file=gin/experiments/t0_3b.gin"
    ' --model_dir=/mnt/t0/runs/t0_3b --gin.INITIAL_CHECKPOINT_PATH=\\"/mnt/t0/'
    "t5-xl\\\"'"
  )
  assert not (tmp_path / "called").exists()


def test_tpu_dry_run_with_spot_creates_a_spot_slice_and_describes_the_restart(fake_bin):
  r = _run(
    TPU,
    "--name",
    "t0-11b",
    "--zone",
    "europe-west4-a",
    "--accelerator_type",
    "v3-512",
    "--spot",
    "--setup",
    "gcsfuse my-bucket /mnt/t0",
    "--dry_run",
    "--",
    *TRAIN_3B,
    bin_dir=fake_bin,
  )
  assert r.returncode == 0, r.stderr
  cmds = _commands(r.stdout)
  assert cmds[0].endswith("--accelerator-type=v3-512 --version=tpu-ubuntu2204-base --spot")
  assert "--worker=all --command='gcsfuse my-bucket /mnt/t0'" in cmds[4]
  assert "resumes from the last checkpoint; at most 20 times" in r.stdout
  assert cmds[-1] == "gcloud compute tpus tpu-vm delete t0-11b --zone=europe-west4-a --quiet"


def _preemptible_gcloud(bin_dir, tmp_path, failures: int, state_after_failure: str):
  """gcloud whose training ssh fails `failures` times, the slice then reading as given."""
  _tool(
    bin_dir,
    "gcloud",
    f'''
log="{tmp_path}/called"; echo "gcloud $*" >> "$log"
state_file="{tmp_path}/state"
case "$*" in
  *" describe "*)
    state=$(cat "$state_file" 2>/dev/null || echo READY)
    [ "$state" != GONE ] || exit 1  # a deleted slice does not exist
    echo "$state" ;;
  *" delete "*) echo GONE > "$state_file" ;;
  *" create "*) echo READY > "$state_file" ;;
  *"ssh "*"t0jax train"*)
    n=$(grep -c "t0jax train" "$log")
    if [ "$n" -le {failures} ]; then echo {state_after_failure} > "$state_file"; exit 255; fi ;;
esac
exit 0
''',
  )


def test_tpu_spot_run_recreates_the_preempted_slice_and_reruns_the_command(fake_bin, tmp_path):
  _preemptible_gcloud(fake_bin, tmp_path, failures=1, state_after_failure="PREEMPTED")
  r = _run(
    TPU,
    "--name",
    "s",
    "--zone",
    "z",
    "--accelerator_type",
    "v5litepod-16",
    "--spot",
    "--",
    *TRAIN_3B,
    bin_dir=fake_bin,
  )
  assert r.returncode == 0, r.stderr
  calls = (tmp_path / "called").read_text().splitlines()
  kinds = [re.search(r"tpu-vm (\w+)", c).group(1) for c in calls]
  # run fails -> state checked -> delete -> create (describe || create) -> install -> run again
  train_calls = [i for i, c in enumerate(calls) if "t0jax train" in c]
  assert len(train_calls) == 2
  between = kinds[train_calls[0] + 1 : train_calls[1]]
  assert between[:2] == ["describe", "delete"] and "create" in between and "scp" in between
  assert "slice s was preempted; recreating it (restart 1)" in r.stderr


def test_tpu_run_that_fails_without_preemption_is_not_retried(fake_bin, tmp_path):
  _preemptible_gcloud(fake_bin, tmp_path, failures=5, state_after_failure="READY")
  r = _run(
    TPU,
    "--name",
    "s",
    "--zone",
    "z",
    "--accelerator_type",
    "v4-8",
    "--spot",
    "--",
    *TRAIN_3B,
    bin_dir=fake_bin,
  )
  assert r.returncode == 1
  assert "failed and the slice was not preempted; not retrying" in r.stderr
  assert sum("t0jax train" in c for c in (tmp_path / "called").read_text().splitlines()) == 1


@pytest.mark.parametrize(
  "args, message",
  [
    (["--zone", "z", "--accelerator_type", "v4-8", "--", "t0jax"], "--name is required"),
    (["--name", "n", "--accelerator_type", "v4-8", "--", "t0jax"], "--zone is required"),
    (["--name", "n", "--zone", "z", "--", "t0jax"], "--accelerator_type is required"),
    (
      ["--name", "n", "--zone", "z", "--accelerator_type", "a100", "--", "t0jax"],
      "--accelerator_type 'a100' is not a TPU type",
    ),
    (["--name", "n", "--zone", "z", "--accelerator_type", "v4-8"], "give the command to run"),
    (
      ["--name", "n", "--zone", "z", "--accelerator_type", "v4-8", "--spto"],
      "unknown option '--spto'",
    ),
  ],
)
def test_tpu_launcher_names_missing_or_bad_options(args, message):
  r = _run(TPU, *args, "--dry_run")
  assert r.returncode == 2 and message in r.stderr


def test_gpu_dry_run_from_a_login_node_prints_the_sbatch_submission(fake_bin, tmp_path):
  r = _run(
    GPU,
    "--nodes",
    "4",
    "--partition",
    "a100",
    "--time",
    "48:00:00",
    "--dry_run",
    "--",
    *TRAIN_3B,
    bin_dir=fake_bin,
  )
  assert r.returncode == 0, r.stderr
  assert _commands(r.stdout) == [
    f"sbatch --nodes=4 --ntasks-per-node=8 --gpus-per-node=8 --partition=a100 --time=48:00:00"
    f" --chdir={ROOT} {ROOT}/launch/gpu_slurm.sh --nodes 4 --partition a100 --time 48:00:00 "
    "-- t0jax train --gin_file=gin/experiments/t0_3b.gin --model_dir=/mnt/t0/runs/t0_3b "
    "'--gin.INITIAL_CHECKPOINT_PATH=\"/mnt/t0/t5-xl\"'"
  ]
  assert not (tmp_path / "called").exists()


SLURM_JOB = {
  "SLURM_JOB_ID": "777",
  "SLURM_JOB_NODELIST": "gpu[012-013]",
  "SLURM_JOB_NUM_NODES": "2",
}


@pytest.mark.parametrize("per, tasks_per_node, local_ids", [("gpu", 8, True), ("node", 1, False)])
def test_gpu_dry_run_inside_the_job_prints_srun_with_the_process_group(
  fake_bin, tmp_path, per, tasks_per_node, local_ids
):
  r = _run(GPU, "--per", per, "--dry_run", "--", *TRAIN_3B, bin_dir=fake_bin, env=SLURM_JOB)
  assert r.returncode == 0, r.stderr
  port = 777 % 4096 + 61440
  assert f"JAX_COORDINATOR_ADDRESS=gpu012:{port}" in r.stdout
  (srun,) = _commands(r.stdout)
  assert srun.startswith(
    f"srun --nodes=2 --ntasks={2 * tasks_per_node} --ntasks-per-node="
    f"{tasks_per_node} --gpus-per-node=8 --label --kill-on-bad-exit=1 bash -c"
  )
  assert "JAX_NUM_PROCESSES=$SLURM_NTASKS JAX_PROCESS_ID=$SLURM_PROCID" in srun
  assert ("JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID" in srun) == local_ids
  assert srun.endswith(
    "t0jax-task t0jax train --gin_file=gin/experiments/t0_3b.gin "
    "--model_dir=/mnt/t0/runs/t0_3b "
    "'--gin.INITIAL_CHECKPOINT_PATH=\"/mnt/t0/t5-xl\"'"
  )
  assert not (tmp_path / "called").exists()


def test_gpu_job_gives_every_task_the_process_group_t0jax_resolves(fake_bin, tmp_path):
  # A stand-in srun that starts the tasks here, with SLURM's per-task variables.
  _tool(
    fake_bin,
    "srun",
    '''
ntasks=1; per=1
while [[ "$1" == --* ]]; do
  case "$1" in --ntasks=*) ntasks=${1#*=} ;; --ntasks-per-node=*) per=${1#*=} ;; esac; shift
done
pids=()
for ((i = 0; i < ntasks; i++)); do
  SLURM_NTASKS=$ntasks SLURM_PROCID=$i SLURM_LOCALID=$((i % per)) "$@" > "$OUT_DIR/out.$i" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
''',
  )
  probe = (
    "import argparse; from t0jax.parallel import distributed as d; p = argparse.ArgumentParser(); "
    "d.add_flags(p); g = d.resolve(p.parse_args([])); "
    "print(g.num_processes, g.process_id, g.coordinator_address, g.local_device_ids)"
  )
  env = {**SLURM_JOB, "T0JAX_ROOT": str(tmp_path), "OUT_DIR": str(tmp_path)}
  r = _run(
    GPU,
    "--gpus_per_node",
    "2",
    "--venv",
    str(ROOT / ".venv"),
    "--",
    sys.executable,
    "-c",
    probe,
    bin_dir=fake_bin,
    env=env,
  )
  assert r.returncode == 0, r.stdout + r.stderr
  port = 777 % 4096 + 61440
  outs = [(tmp_path / f"out.{i}").read_text().strip().splitlines()[-1] for i in range(4)]
  assert outs == [f"4 {i} gpu012:{port} ({i % 2},)" for i in range(4)]


def test_gpu_launcher_names_bad_options():
  r = _run(GPU, "--per", "socket", "--dry_run", "--", "t0jax")
  assert r.returncode == 2 and "--per must be 'gpu' or 'node', not 'socket'" in r.stderr
  r = _run(GPU, "--dry_run")
  assert r.returncode == 2 and "give the command to run after --" in r.stderr


def test_demo_passes_its_arguments_to_train_and_none_to_the_install(tmp_path):
  """demo.sh sources _venv.sh, which would take the demo's own first argument for pip extras
  (`pip install -e .[--gin.SEED=1]` fails) unless demo.sh names the extras itself."""
  checkout = tmp_path / "checkout"
  shutil.copytree(ROOT / "launch", checkout / "launch")
  (checkout / "setup.py").write_text("")
  venv_bin = checkout / ".venv" / "bin"
  venv_bin.mkdir(parents=True)
  _tool(venv_bin, "python", f'echo "python $*" >> "{tmp_path}/called"\n')
  _tool(
    venv_bin,
    "t0jax",
    f'echo "t0jax $*" >> "{tmp_path}/called"\n'
    'if [ "$1" = eval ]; then mkdir -p "$7" && echo table > "$7/results.md"; fi\n',
  )
  done = _run(
    str(checkout / "launch" / "demo.sh"), "--gin.SEED=1", env={"T0JAX_DEMO_DIR": "runs/d"}
  )
  assert done.returncode == 0, done.stderr
  called = (tmp_path / "called").read_text().splitlines()
  assert "python -m pip install -q -e ." in called
  assert "t0jax train --gin_file=gin/experiments/demo.gin --model_dir=runs/d --gin.SEED=1" in called
  assert done.stdout.splitlines()[-1] == "table"
