"""Multi-process runs, shared by `t0jax train` and `t0jax eval`.

Start-up: who the coordinator is, how many processes there are and which one this is, taken from
flags, from JAX's or SLURM's environment variables, or (on Cloud TPU) from the VM metadata. JAX
aborts the whole process with a C++ stack trace when its coordinator cannot be reached, and waits
forever for processes that were never started, so start-up runs under a deadline: past it, the
process prints what it was waiting for (the address, the process count) and exits.

What each host feeds and how hosts agree during a run (data slices, global batches, gathering,
failing together) is in hosts.py.
"""

import dataclasses
import logging
import os
import re
import socket
import sys
import threading
import time
from typing import Mapping, Optional, Tuple

import numpy as np

log = logging.getLogger("t0jax.parallel.distributed")

# Exit status of a process stopped by the start-up deadline (distinct from argparse's 2).
EXIT_TIMEOUT = 3
DEFAULT_TIMEOUT_S = 300


class DistributedError(RuntimeError):
  """A multi-process run that cannot start or cannot agree; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
  num_processes: int = 1
  process_id: int = 0
  coordinator_address: Optional[str] = None
  local_device_ids: Optional[Tuple[int, ...]] = None
  source: str = "single process"  # where the values came from, for error messages

  @property
  def is_multiprocess(self) -> bool:
    return self.num_processes > 1 or self.source == "Cloud TPU"


def add_flags(parser) -> None:
  """The multi-host flags of `t0jax train` and `t0jax eval` (argparse)."""
  g = parser.add_argument_group(
    "multi-host",
    "Run one process per host (or per GPU). Without these flags the values come "
    "from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, from SLURM "
    "(SLURM_NTASKS, SLURM_PROCID, SLURM_STEP_NODELIST) or, on a Cloud TPU VM, from its metadata.",
  )
  g.add_argument(
    "--coordinator_address",
    metavar="HOST:PORT",
    help="address of process 0, reachable from every process",
  )
  g.add_argument("--num_processes", type=int, metavar="N", help="total number of processes")
  g.add_argument("--process_id", type=int, metavar="I", help="this process, 0..N-1")
  g.add_argument(
    "--local_device_ids",
    metavar="0,1,...",
    help="devices this process uses (default: all devices of the host)",
  )
  g.add_argument(
    "--distributed_timeout_s",
    type=float,
    default=DEFAULT_TIMEOUT_S,
    metavar="S",
    help="give up start-up after S seconds if the coordinator is unreachable or "
    f"processes are missing (default {DEFAULT_TIMEOUT_S})",
  )
  g.add_argument(
    "--cluster",
    choices=("auto", "none"),
    default="auto",
    help="'none' ignores SLURM / Cloud TPU detection (flags and JAX_* still apply)",
  )


def _int(value, name: str) -> Optional[int]:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except (TypeError, ValueError):
    raise DistributedError(f"{name}={value!r} is not an integer.") from None


def _device_ids(value, name: str) -> Optional[Tuple[int, ...]]:
  if value is None or value == "":
    return None
  try:
    return tuple(int(x) for x in str(value).split(","))
  except ValueError:
    raise DistributedError(
      f"{name}={value!r}: give device ids separated by commas, e.g. 0,1,2,3."
    ) from None


def first_slurm_host(nodelist: str) -> str:
  """The first host of a SLURM node list such as `gpu[003-006,010],gpu-b7` -> `gpu003`.

  Written here because JAX's own parser is private API (`jax._src.clusters`).
  """
  m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
  if not m:
    raise DistributedError(
      f"Cannot read the SLURM node list {nodelist!r}; pass --coordinator_address HOST:PORT."
    )
  prefix, ranges = m.group(1), m.group(2)
  return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def _slurm_values(env: Mapping[str, str]) -> Optional[dict]:
  if "SLURM_JOB_ID" not in env or "SLURM_NTASKS" not in env or "SLURM_PROCID" not in env:
    return None
  n = _int(env["SLURM_NTASKS"], "SLURM_NTASKS")
  nodes = _int(
    env.get("SLURM_STEP_NUM_NODES")
    or env.get("SLURM_JOB_NUM_NODES")
    or env.get("SLURM_NNODES")
    or 1,
    "SLURM_STEP_NUM_NODES",
  )
  nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
  # Same default port rule as JAX's SLURM detection, so both agree without configuration.
  port = env.get("JAX_COORDINATOR_PORT") or str(int(env["SLURM_JOB_ID"]) % 4096 + 61440)
  out = {
    "num_processes": n,
    "process_id": _int(env["SLURM_PROCID"], "SLURM_PROCID"),
    "coordinator_address": f"{first_slurm_host(nodelist)}:{port}" if nodelist else None,
  }
  # Several tasks on a node means one process per GPU: each sees only its own device.
  if n and nodes and n > nodes and "SLURM_LOCALID" in env:
    out["local_device_ids"] = (_int(env["SLURM_LOCALID"], "SLURM_LOCALID"),)
  return out


def _on_cloud_tpu_vm(env: Mapping[str, str]) -> bool:
  if env.get("TPU_WORKER_HOSTNAMES") or env.get("TPU_PROCESS_ADDRESSES"):
    return True
  import glob
  import importlib.util

  return importlib.util.find_spec("libtpu") is not None and bool(
    glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")
  )


def check_address(address: str, what: str) -> Tuple[str, int]:
  host, sep, port = address.rpartition(":")
  host = host.strip("[]")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise DistributedError(
      f"{what}={address!r} is not HOST:PORT (for example 10.0.0.2:1234, "
      "with a port between 1 and 65535)."
    )
  return host, int(port)


def resolve(args, environ: Optional[Mapping[str, str]] = None) -> ProcessGroup:
  """The process group the flags and the environment describe (no network, no JAX)."""
  env = os.environ if environ is None else environ
  flags = {
    "coordinator_address": getattr(args, "coordinator_address", None),
    "num_processes": getattr(args, "num_processes", None),
    "process_id": getattr(args, "process_id", None),
    "local_device_ids": _device_ids(getattr(args, "local_device_ids", None), "--local_device_ids"),
  }
  jax_env = {
    "coordinator_address": env.get("JAX_COORDINATOR_ADDRESS") or None,
    "num_processes": _int(env.get("JAX_NUM_PROCESSES"), "JAX_NUM_PROCESSES"),
    "process_id": _int(env.get("JAX_PROCESS_ID"), "JAX_PROCESS_ID"),
    "local_device_ids": _device_ids(env.get("JAX_LOCAL_DEVICE_IDS"), "JAX_LOCAL_DEVICE_IDS"),
  }
  cluster = getattr(args, "cluster", "auto")
  slurm = _slurm_values(env) if cluster == "auto" else None
  names = {
    "coordinator_address": ("--coordinator_address", "JAX_COORDINATOR_ADDRESS", None),
    "num_processes": ("--num_processes", "JAX_NUM_PROCESSES", "SLURM_NTASKS"),
    "process_id": ("--process_id", "JAX_PROCESS_ID", "SLURM_PROCID"),
    "local_device_ids": ("--local_device_ids", "JAX_LOCAL_DEVICE_IDS", "SLURM_LOCALID"),
  }
  values, origin = {}, {}
  for key, labels in names.items():
    sources = [
      (labels[0], flags[key]),
      (labels[1], jax_env[key]),
      (labels[2] or "SLURM_STEP_NODELIST", (slurm or {}).get(key)),
    ]
    given = [(label, v) for label, v in sources if v is not None]
    if key in ("num_processes", "process_id") and len({v for _, v in given}) > 1:
      raise DistributedError(
        "The process "
        + ("count" if key == "num_processes" else "id")
        + " does not match: "
        + ", ".join(f"{label}={v}" for label, v in given)
        + ". Give one value (or drop the "
        "flag and let the scheduler's variables decide)."
      )
    values[key], origin[key] = given[0][1] if given else None, given[0][0] if given else None

  n, pid, address = values["num_processes"], values["process_id"], values["coordinator_address"]
  anything = any(v is not None for k, v in values.items() if k != "local_device_ids")
  if not anything:
    if cluster == "auto" and _on_cloud_tpu_vm(env):
      return ProcessGroup(num_processes=0, process_id=0, source="Cloud TPU")
    return ProcessGroup()
  first = origin["num_processes"] or origin["process_id"] or origin["coordinator_address"]
  source = (
    "flags"
    if first.startswith("--")
    else "JAX_* environment"
    if first.startswith("JAX_")
    else "SLURM"
  )
  if n is None:
    raise DistributedError(
      f"{origin['coordinator_address'] or origin['process_id']} is set but "
      "the number of processes is not: pass --num_processes N."
    )
  if n < 1:
    raise DistributedError(
      f"{origin['num_processes']}={n}: the number of processes must be at least 1."
    )
  if pid is None:
    if n > 1:
      raise DistributedError(
        f"{origin['num_processes']}={n} but this process's id is not set: "
        f"pass --process_id I (0..{n - 1}), a different one to each process."
      )
    pid = 0
  if not 0 <= pid < n:
    raise DistributedError(
      f"{origin['process_id']}={pid} is outside 0..{n - 1} ({origin['num_processes']}={n})."
    )
  if n == 1:
    return ProcessGroup(source=source)
  if address is None:
    raise DistributedError(
      f"{n} processes need a coordinator: pass --coordinator_address "
      "HOST:PORT (process 0's host, reachable from every process)."
    )
  check_address(address, origin["coordinator_address"])
  return ProcessGroup(
    num_processes=n,
    process_id=pid,
    coordinator_address=address,
    local_device_ids=values["local_device_ids"],
    source=source,
  )


class _Deadline:
  """Stops the process with a clear message if start-up is still running after `seconds`.

  A watchdog thread, because JAX's connect and barrier calls block in C++ (releasing the GIL) and
  end in an abort, never in a Python exception we could catch.
  """

  def __init__(self, seconds: float, group: ProcessGroup):
    self.seconds, self.group, self.stage = seconds, group, "starting"
    self._timer = threading.Timer(seconds, self._expire)
    self._timer.daemon = True

  def _expire(self):
    g = self.group
    where = g.coordinator_address or "the Cloud TPU coordinator (worker 0)"
    print(
      f"t0jax: process {g.process_id} of {g.num_processes or '?'} (host "
      f"{socket.gethostname()}) gave up after {self.seconds:g} s {self.stage} through the "
      f"coordinator at {where} (settings from {g.source}). Check that all "
      f"{g.num_processes or ''} processes were started, each with a distinct process id "
      "in 0..N-1 and the same process count, and that process 0 runs at that address; raise "
      "--distributed_timeout_s if hosts start slowly.",
      file=sys.stderr,
      flush=True,
    )
    os._exit(EXIT_TIMEOUT)

  def __enter__(self):
    self._timer.start()
    return self

  def __exit__(self, *exc):
    self._timer.cancel()


def _wait_for_coordinator(group: ProcessGroup, timeout_s: float) -> None:
  """Processes other than 0 first knock on the coordinator's port: an unreachable address is
  reported as such, instead of as a missing process after JAX's long wait."""
  host, port = check_address(group.coordinator_address, "coordinator address")
  try:
    socket.getaddrinfo(host, port)
  except socket.gaierror as e:
    raise DistributedError(
      f"Process {group.process_id}: the coordinator host {host!r} (from "
      f"{group.coordinator_address}, {group.source}) does not resolve "
      f"({e.strerror}). Use process 0's hostname or IP address."
    ) from None
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, port), timeout=min(5.0, timeout_s)):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise DistributedError(
          f"Process {group.process_id}: nothing answered at the coordinator address "
          f"{group.coordinator_address} within {timeout_s:g} s ({e.strerror or e}; settings "
          f"from {group.source}). Start process 0 on that host, check the host and port, and "
          "that the port is open between hosts."
        ) from None
      time.sleep(0.25)


def initialize(group: ProcessGroup, timeout_s: float = DEFAULT_TIMEOUT_S) -> ProcessGroup:
  """Start `jax.distributed` for `group` (nothing to do for a single process)."""
  if not group.is_multiprocess:
    return group
  import jax
  from jax.experimental import multihost_utils

  if group.source != "Cloud TPU" and group.process_id != 0:
    _wait_for_coordinator(group, timeout_s)
  with _Deadline(timeout_s, group) as deadline:
    deadline.stage = "waiting for every process to join"
    if group.source == "Cloud TPU":  # JAX reads the worker list from the VM metadata
      jax.distributed.initialize(initialization_timeout=int(timeout_s) + 60)
      group = dataclasses.replace(
        group, num_processes=jax.process_count(), process_id=jax.process_index()
      )
    else:
      jax.distributed.initialize(
        coordinator_address=group.coordinator_address,
        num_processes=group.num_processes,
        process_id=group.process_id,
        local_device_ids=list(group.local_device_ids) if group.local_device_ids else None,
        cluster_detection_method="deactivate",
        # JAX's own deadline comes later than ours: its expiry is an abort without a message.
        initialization_timeout=int(timeout_s) + 60,
      )
    deadline.stage = "exchanging the device topology"
    jax.devices()
    deadline.stage = "agreeing on the process count"
    claims = np.asarray(
      multihost_utils.process_allgather(np.array([group.num_processes, group.process_id], np.int64))
    ).reshape(-1, 2)
  _check_agreement(group, claims, jax.process_count(), jax.process_index())
  log.info(
    "process %d of %d started (%d local / %d global devices, coordinator %s)",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    group.coordinator_address,
  )
  return group


def _check_agreement(group: ProcessGroup, claims: np.ndarray, count: int, index: int) -> None:
  counts, ids = claims[:, 0].tolist(), claims[:, 1].tolist()
  if len(set(counts)) > 1 or counts[0] != count:
    detail = ", ".join(f"process {i} says {c}" for i, c in zip(ids, counts))
    raise DistributedError(
      f"The process count does not match: {count} processes joined the "
      f"coordinator at {group.coordinator_address} but {detail}. Start "
      "exactly N processes, all with the same --num_processes N."
    )
  if sorted(ids) != list(range(count)) or index != group.process_id:
    raise DistributedError(
      f"Process ids {sorted(ids)} are not 0..{count - 1}, each once: give "
      "every process a distinct --process_id."
    )


def initialize_from_args(args, environ: Optional[Mapping[str, str]] = None) -> ProcessGroup:
  """`resolve` then `initialize`; call before anything touches JAX devices."""
  group = resolve(args, environ)
  return initialize(group, getattr(args, "distributed_timeout_s", DEFAULT_TIMEOUT_S))


def finish(group: ProcessGroup, exit_code: int) -> int:
  """End a run. A clean end passes JAX's shutdown barrier explicitly (left to interpreter exit,
  it waits about a minute for peers that are already gone); a failure exits at once, so the
  process does not wait at that barrier for hosts that are still running."""
  if not group.is_multiprocess:
    return exit_code
  if exit_code == 0:
    import jax

    jax.distributed.shutdown()
    return 0
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(exit_code)


def process_index() -> int:
  import jax

  return jax.process_index()


def is_primary() -> bool:
  """Process 0 writes metrics, reports and logs; the others only compute."""
  return process_index() == 0


def describe_process() -> str:
  import jax

  return f"process {jax.process_index()} of {jax.process_count()} (host {socket.gethostname()})"
