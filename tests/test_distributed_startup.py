"""Multi-host start-up: where the process group comes from (flags, JAX_*, SLURM), bad settings
named before anything waits, an unreachable coordinator or a missing process reported within the
deadline, disagreeing process counts refused; which rows of the batch each host reads."""

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from t0jax.parallel import distributed, hosts
from t0jax.parallel.distributed import DistributedError, ProcessGroup, resolve
from t0jax.train.input_pipeline import DataShareError, TrainData
from t0jax.parallel.partitioning import Partitioner

ROOT = Path(__file__).resolve().parent.parent
SMALL_GIN = str(ROOT / "tests" / "data" / "train_small.gin")


def _args(*argv):
  parser = argparse.ArgumentParser()
  distributed.add_flags(parser)
  return parser.parse_args(list(argv))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


SLURM = {
  "SLURM_JOB_ID": "4242",
  "SLURM_NTASKS": "16",
  "SLURM_PROCID": "5",
  "SLURM_LOCALID": "1",
  "SLURM_STEP_NUM_NODES": "2",
  "SLURM_STEP_NODELIST": "gpu[007-008]",
}


def test_no_flags_and_no_cluster_environment_is_a_single_process():
  assert resolve(_args(), {}) == ProcessGroup()
  assert not resolve(_args(), {}).is_multiprocess


def test_flags_give_the_process_group():
  g = resolve(
    _args("--coordinator_address", "10.0.0.2:1234", "--num_processes", "4", "--process_id", "3"), {}
  )
  assert (g.coordinator_address, g.num_processes, g.process_id, g.source) == (
    "10.0.0.2:1234",
    4,
    3,
    "flags",
  )


def test_jax_environment_variables_give_the_process_group():
  g = resolve(
    _args(),
    {
      "JAX_COORDINATOR_ADDRESS": "host0:99",
      "JAX_NUM_PROCESSES": "2",
      "JAX_PROCESS_ID": "1",
      "JAX_LOCAL_DEVICE_IDS": "0,1",
    },
  )
  assert (g.coordinator_address, g.num_processes, g.process_id, g.local_device_ids) == (
    "host0:99",
    2,
    1,
    (0, 1),
  )
  assert g.source == "JAX_* environment"


def test_slurm_variables_give_the_group_with_one_device_per_task_when_tasks_share_a_node():
  g = resolve(_args(), SLURM)
  # JAX's SLURM rule for the port: job id mod 4096 + 61440.
  assert g.coordinator_address == f"gpu007:{4242 % 4096 + 61440}"
  assert (g.num_processes, g.process_id, g.local_device_ids, g.source) == (16, 5, (1,), "SLURM")


def test_slurm_with_one_task_per_node_lets_each_process_use_every_local_gpu():
  env = {
    **SLURM,
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "0",
    "JAX_COORDINATOR_PORT": "7777",
  }
  g = resolve(_args(), env)
  assert (g.coordinator_address, g.local_device_ids) == ("gpu007:7777", None)


def test_cluster_none_ignores_slurm():
  assert resolve(_args("--cluster", "none"), SLURM) == ProcessGroup()


@pytest.mark.parametrize(
  "nodelist, first",
  [
    ("gpu[003-006,010],gpu-b7", "gpu003"),
    ("node17", "node17"),
    ("a1,b2", "a1"),
    ("x[12,15]", "x12"),
  ],
)
def test_first_host_of_a_slurm_node_list(nodelist, first):
  assert distributed.first_slurm_host(nodelist) == first


def test_process_count_that_does_not_match_the_scheduler_is_an_error():
  with pytest.raises(
    DistributedError,
    match=r"process count does not match: "
    r"--num_processes=8, SLURM_NTASKS=16",
  ):
    resolve(_args("--num_processes", "8"), SLURM)


@pytest.mark.parametrize(
  "argv, env, message",
  [
    (
      ("--num_processes", "2", "--process_id", "0"),
      {},
      r"need a coordinator: pass "
      r"--coordinator_address",
    ),
    (
      ("--coordinator_address", "h:1", "--num_processes", "2"),
      {},
      r"--num_processes=2 but this "
      r"process's id is not set",
    ),
    (("--coordinator_address", "h:1", "--process_id", "1"), {}, r"number of processes is not"),
    (
      ("--coordinator_address", "h:1", "--num_processes", "2", "--process_id", "2"),
      {},
      r"--process_id=2 is outside 0..1",
    ),
    (
      ("--coordinator_address", "h", "--num_processes", "2", "--process_id", "1"),
      {},
      r"--coordinator_address='h' is not HOST:PORT",
    ),
    (
      ("--coordinator_address", "h:70000", "--num_processes", "2", "--process_id", "1"),
      {},
      r"not HOST:PORT",
    ),
    ((), {"JAX_NUM_PROCESSES": "two"}, r"JAX_NUM_PROCESSES='two' is not an integer"),
    (
      (
        "--local_device_ids",
        "0;1",
        "--coordinator_address",
        "h:1",
        "--num_processes",
        "2",
        "--process_id",
        "0",
      ),
      {},
      r"--local_device_ids='0;1'",
    ),
  ],
)
def test_incomplete_or_invalid_settings_name_the_culprit(argv, env, message):
  with pytest.raises(DistributedError, match=message):
    resolve(_args(*argv), env)


def test_one_process_needs_no_coordinator():
  g = resolve(_args("--num_processes", "1"), {})
  assert g.num_processes == 1 and not g.is_multiprocess


def _train_cli(*flags, env_extra=None, devices=2):
  env = {
    **os.environ,
    "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    "JAX_PLATFORMS": "cpu",
    "CUDA_VISIBLE_DEVICES": "",
    "PYTHONUNBUFFERED": "1",
    **(env_extra or {}),
  }
  return subprocess.Popen(
    [
      sys.executable,
      "-m",
      "t0jax.train",
      f"--gin_file={SMALL_GIN}",
      "--model_dir=/nonexistent-unused",
      *flags,
    ],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def test_unreachable_coordinator_fails_within_the_timeout_naming_the_address():
  address = f"localhost:{_free_port()}"  # nothing listens there
  start = time.monotonic()
  proc = _train_cli(
    f"--coordinator_address={address}",
    "--num_processes=2",
    "--process_id=1",
    "--distributed_timeout_s=2",
  )
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 2, out
  assert f"nothing answered at the coordinator address {address} within 2 s" in out
  assert time.monotonic() - start < 60


def test_coordinator_host_that_does_not_resolve_fails_at_once():
  proc = _train_cli(
    "--coordinator_address=no-such-host.invalid:1234",
    "--num_processes=2",
    "--process_id=1",
    "--distributed_timeout_s=60",
  )
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 2, out
  assert "coordinator host 'no-such-host.invalid'" in out and "does not resolve" in out


def test_missing_process_stops_the_coordinator_within_the_timeout_naming_the_count():
  address = f"localhost:{_free_port()}"
  start = time.monotonic()
  proc = _train_cli(
    f"--coordinator_address={address}",
    "--num_processes=2",
    "--process_id=0",
    "--distributed_timeout_s=3",
  )
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == distributed.EXIT_TIMEOUT, out
  assert "process 0 of 2" in out and f"coordinator at {address}" in out
  assert "Check that all 2 processes were started" in out
  assert time.monotonic() - start < 60


def test_processes_that_disagree_on_the_count_all_stop_with_an_error():
  address = f"localhost:{_free_port()}"
  procs = [
    _train_cli(
      f"--coordinator_address={address}",
      f"--num_processes={n}",
      f"--process_id={i}",
      "--distributed_timeout_s=60",
    )
    for i, n in ((0, 2), (1, 3))
  ]
  outs = [p.communicate(timeout=180)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 2, out
    assert "The process count does not match: 2 processes joined" in out
    assert "process 1 says 3" in out


# ---- which rows each host reads ----


def _fake_two_hosts(device):
  return device.id // 4  # devices 0-3 on "host 0", 4-7 on "host 1"


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
@pytest.mark.parametrize(
  "num_partitions, expected", [(1, [(0, 2), (1, 2)]), (2, [(0, 2), (1, 2)]), (8, [(0, 1), (0, 1)])]
)
def test_hosts_that_hold_the_same_rows_read_the_same_data_slice(num_partitions, expected):
  sharding = Partitioner(num_partitions).batch_sharding
  got = [hosts.host_data_slice(sharding, 16, _fake_two_hosts, p) for p in (0, 1)]
  assert got == expected


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
def test_hosts_with_interleaved_rows_are_refused():
  sharding = Partitioner(1).batch_sharding
  with pytest.raises(DistributedError, match="interleaved rows"):
    hosts.host_data_slice(sharding, 16, lambda d: d.id % 2, 0)


def test_virtual_shards_that_hosts_cannot_share_evenly_are_an_error():
  data = TrainData("demo_reviews_tone", {"inputs": 32, "targets": 8}, 24, num_virtual_shards=6)
  assert list(data.host_shards(1, 3)) == [2, 3]
  with pytest.raises(ValueError, match=r"split between 4 hosts.*num_virtual_shards=6"):
    data.host_shards(0, 4)


@pytest.fixture
def fixture_rows(tmp_path):
  """The catalogue's 3-row fixtures as local data, tokenized with the demo vocabulary."""
  import t0jax.catalog as catalog
  from t0jax.catalog import testing
  from t0jax.data import settings

  testing.fixture_data_dir(
    catalog.load_catalog(catalog.ROOT), os.path.join(catalog.ROOT, "fixtures"), str(tmp_path)
  )
  settings.set_data_dir(str(tmp_path))
  settings.set_source("jsonl")
  settings.set_vocab(catalog.demo.VOCAB_PATH, extra_ids=0)
  yield
  settings.reset()


def test_host_whose_data_share_is_empty_gets_an_error_naming_its_slice(fixture_rows):
  # 3 examples over 8 virtual shards: shard 4 holds nothing, so the 5th of 8 hosts has no data.
  data = TrainData(
    "amazon_polarity_flattering_light", {"inputs": 64, "targets": 8}, 8, num_virtual_shards=8
  )
  with pytest.raises(
    DataShareError,
    match=r"Virtual shard 4 yielded no examples, so data slice "
    r"4 of 8 \(virtual shards 4-4 of 8\) of 'amazon_polarity_flattering_light'",
  ):
    next(data.host_batches(0, 4, 8))
