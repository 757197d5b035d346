"""Two processes x 4 CPU devices (localhost coordinator) train exactly like one process x 8
devices: same per-step losses, same final parameters; both write their part of each checkpoint,
only process 0 writes metrics; a 2-process run resumes another layout's checkpoint and stops
every host at one agreed step on SIGTERM; a host without its data share stops every host."""

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gin
import jax
import numpy as np
import pytest

import t0jax.catalog  # noqa: F401  (registers the demo tasks)

# In the suite: the two runs below take about a minute (the resume-on-SIGTERM runs are opt-in).
from t0jax.cli import gin_flags as gin_utils
from t0jax.train import trainer
from t0jax.checkpoints.orbax import Checkpointer, load_params
from t0jax.train.writer import read_metrics

ROOT = Path(__file__).resolve().parent.parent
SMALL_GIN = str(ROOT / "tests" / "data" / "train_small.gin")
# Adafactor's epsilon1 raised from T5X's 1e-30 for the comparison only: at 1e-30 a parameter whose
# gradient is rounding noise (one element of the demo's model has 1e-10 where its neighbours have
# 1e-3) gets a full-size update whose sign is the noise's, so a mesh that adds the same gradient
# in another order moves it the other way (measured: [17, 0, 4] of a (32, 4, 8) key kernel off by
# 2 x lr x its RMS, in one process too, FSDP against data parallel). Gradients here are ~1e-3:
# 1e-12 under the square root changes an update only where the gradient is below ~1e-6.
EPSILON1 = "t0jax.optim.adafactor.epsilon1 = 1e-12"
STEPS = ["--gin.TRAIN_STEPS=4", "--gin.CHECKPOINT_PERIOD=2", f"--gin_bindings={EPSILON1}"]
# The 2-process run also shards parameters over both hosts (FSDP), so each host saves a part.
TWO_HOST_LAYOUT = ["--gin.AXIS_RULES='fsdp'", "--gin.NUM_PARTITIONS=2"]

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(model_dir, *flags, env_per_process=(None, None)):
  """Start `t0jax train` as 2 processes x 4 devices talking through a localhost coordinator."""
  address = f"localhost:{_free_port()}"
  procs = []
  for i, extra_env in enumerate(env_per_process):
    env = {
      **os.environ,
      "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
      "JAX_PLATFORMS": "cpu",
      "CUDA_VISIBLE_DEVICES": "",
      "PYTHONUNBUFFERED": "1",
      **(extra_env or {}),
    }
    procs.append(
      subprocess.Popen(
        [
          sys.executable,
          "-m",
          "t0jax.train",
          f"--gin_file={SMALL_GIN}",
          f"--model_dir={model_dir}",
          f"--coordinator_address={address}",
          "--num_processes=2",
          f"--process_id={i}",
          "--distributed_timeout_s=120",
          *flags,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
    )
  return procs


def _outputs(procs, timeout=300):
  return [p.communicate(timeout=timeout)[0] for p in procs]


def _losses(model_dir):
  return {r["step"]: r["loss"] for r in read_metrics(model_dir)}


def _train_both_ways(base):
  """The same 4 steps as 2 processes x 4 devices (subprocesses) and, meanwhile, as 1 process x
  8 devices (this process). Keeps the second's losses and parameters on disk."""
  procs = _launch(base / "two", *STEPS, *TWO_HOST_LAYOUT)
  try:
    gin.clear_config()
    gin_utils.parse(
      [SMALL_GIN],
      [f"MODEL_DIR={str(base / 'one')!r}", "TRAIN_STEPS=4", "CHECKPOINT_PERIOD=2", EPSILON1],
      finalize=False,
    )
    one = trainer.train()
  finally:
    gin.clear_config()
    outs = _outputs(procs)
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  np.savez(base / "one_params.npz", *[np.asarray(x) for x in jax.tree.leaves(one["params"])])
  (base / "done.json").write_text(json.dumps({"losses": one["losses"], "outputs": outs}))


@pytest.fixture(scope="session")
def runs(tmp_path_factory, worker_id):
  """Computed once per test session, even with several xdist workers (they share the base temp
  directory's parent and take turns through a lock)."""
  root = tmp_path_factory.getbasetemp()
  shared = root.parent if worker_id != "master" else root
  base = shared / "multihost"
  with open(shared / "multihost.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (base / "done.json").exists():
      shutil.rmtree(base, ignore_errors=True)
      base.mkdir()
      _train_both_ways(base)
  done = json.loads((base / "done.json").read_text())
  with np.load(base / "one_params.npz") as f:
    params = [f[f"arr_{i}"] for i in range(len(f.files))]
  one = {"losses": {int(k): v for k, v in done["losses"].items()}, "params": params}
  return base, one, done["outputs"]


def test_two_processes_give_the_per_step_losses_and_parameters_of_one_process(runs):
  base, one, _ = runs
  two = _losses(base / "two")
  assert sorted(two) == [1, 2, 3, 4]
  np.testing.assert_allclose(
    [two[s] for s in range(1, 5)], [one["losses"][s] for s in range(1, 5)], rtol=1e-5
  )
  _, params = load_params(str(base / "two"))
  # Sharded reductions add in another order (measured: all parameters within 3e-6); a wrong
  # shard or batch moves parameters by whole updates (learning rate x parameter RMS, ~1e-3).
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(one["params"])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_only_process_zero_writes_metrics_and_reports(runs):
  base, _, outs = runs
  assert [r["step"] for r in read_metrics(base / "two")] == [1, 2, 3, 4]
  assert "t0jax train: done at step 4." in outs[0]
  assert "t0jax train:" not in outs[1]
  assert (base / "two" / "spiece.model").is_file()
  assert not list((base / "two").glob(".t0jax_shared_*"))  # the shared-dir probe is cleaned up


def test_each_process_writes_its_part_of_every_checkpoint(runs):
  base, _, _ = runs
  for step in ("2", "4"):
    parts = sorted(
      p.name for p in (base / "two" / "checkpoints" / step / "state").glob("ocdbt.process_*")
    )
    assert parts == ["ocdbt.process_0", "ocdbt.process_1"]


@pytest.mark.slow  # a third and fourth multi-process run: run with --runslow
def test_two_processes_resume_another_layouts_checkpoint_and_stop_together_on_sigterm(
  runs, tmp_path
):
  base, one, _ = runs
  run = tmp_path / "resumed"
  shutil.copytree(base / "two", run)
  # As if preempted after step 2 (checkpoint 4 and its metrics never written); resume without FSDP.
  shutil.rmtree(run / "checkpoints" / "4")
  kept = [
    line
    for line in (run / "metrics.jsonl").read_text().splitlines()
    if json.loads(line)["step"] <= 2
  ]
  (run / "metrics.jsonl").write_text("\n".join(kept) + "\n")
  procs = _launch(
    run, "--gin.TRAIN_STEPS=100000", "--gin.CHECKPOINT_PERIOD=100000", f"--gin_bindings={EPSILON1}"
  )
  deadline = time.time() + 300
  while not (run / "metrics.jsonl").exists() or max(_losses(run), default=0) < 4:
    assert time.time() < deadline and all(p.poll() is None for p in procs), _outputs(procs, 30)
    time.sleep(0.1)
  for p in procs:
    p.send_signal(signal.SIGTERM)
  outs = _outputs(procs, timeout=180)
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  losses = _losses(run)
  np.testing.assert_allclose(
    [losses[3], losses[4]], [one["losses"][3], one["losses"][4]], rtol=1e-5
  )
  saved = sorted(int(d) for d in os.listdir(run / "checkpoints") if d.isdigit())
  assert saved[0] == 2 and len(saved) == 2 and 4 <= saved[1] < 100000
  assert f"stopped by SIGTERM at step {saved[1]}" in outs[0]
  ckpt = Checkpointer(str(run / "checkpoints"), keep=None, async_save=False)
  data_position, _ = ckpt.read_meta(saved[1])
  ckpt.close()
  assert data_position["step"] == saved[1]  # the data position saved with the agreed step


def test_a_host_without_its_data_share_stops_every_host_naming_it(tmp_path):
  """Process 1's data directory is empty: it names itself and its slice; process 0 names it."""
  import t0jax.catalog as catalog
  from t0jax.catalog import testing

  data = tmp_path / "data"
  testing.fixture_data_dir(
    catalog.load_catalog(catalog.ROOT), os.path.join(catalog.ROOT, "fixtures"), str(data)
  )
  (tmp_path / "empty").mkdir()
  common = {
    "T0JAX_DATA_SOURCE": "jsonl",
    "T0JAX_VOCAB": catalog.demo.VOCAB_PATH,
    "T0JAX_VOCAB_EXTRA_IDS": "0",
  }
  procs = _launch(
    tmp_path / "run",
    "--gin.MIXTURE_OR_TASK_NAME='amazon_polarity_flattering_light'",
    "--gin.train.num_virtual_shards=2",
    env_per_process=(
      {**common, "T0JAX_DATA_DIR": str(data)},
      {**common, "T0JAX_DATA_DIR": str(tmp_path / "empty")},
    ),
  )
  outs = _outputs(procs)
  assert [p.returncode for p in procs] == [2, 2], outs
  host = socket.gethostname()
  assert (
    f"process 1 of 2 (host {host}): reading the first batch failed: Cannot open data slice "
    "1 of 2 (virtual shards 1-1 of 2) of 'amazon_polarity_flattering_light'"
  ) in outs[1]
  assert "reading the first batch failed on process 1 (see its error)" in outs[0]
