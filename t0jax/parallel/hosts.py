"""Per-host data plumbing, shared by training and evaluation: which slice of a batch this host
feeds, this host's rows -> global arrays, small Python values gathered from every host, and
stopping every host when one fails. (Process start-up and shutdown: distributed.py.)

Hosts whose devices hold the same batch rows (a model-parallel group spanning hosts) feed the same
slice, so there can be fewer slices than processes. Evaluation results travel once, at the end,
as JSON keyed by (example index, slice, position): examples that share an `idx` (or a task
without one) never collide, and hosts of one model-parallel group send equal records that are
merged. t5's rank-classification metric failed on duplicate indices instead.
"""

import json
import os
from typing import Any, Callable, List, Mapping, Optional, Tuple

import numpy as np

from t0jax.parallel.distributed import DistributedError, describe_process


def host_data_slice(
  batch_sharding, global_batch_size: int, process_of=None, this_process: Optional[int] = None
) -> Tuple[int, int]:
  """(slice index, number of slices) of the global batch that this process must supply.

  Hosts whose devices hold the same rows (the 'model' axis spans hosts) read the same slice, so
  the number of slices can be smaller than the number of processes. `process_of` (device ->
  process index) and `this_process` default to JAX's.
  """
  import jax

  process_of = process_of or (lambda d: d.process_index)
  this_process = jax.process_index() if this_process is None else this_process
  rows_of = {}
  for device, index in batch_sharding.devices_indices_map((global_batch_size,)).items():
    start, stop, _ = index[0].indices(global_batch_size)
    lo, hi = rows_of.get(process_of(device), (global_batch_size, 0))
    rows_of[process_of(device)] = (min(lo, start), max(hi, stop))
  slices = sorted(set(rows_of.values()))
  covered = 0
  for lo, hi in slices:
    if lo != covered:
      raise DistributedError(
        f"The batch layout gives processes overlapping or interleaved rows ({slices}); each "
        "process must hold one contiguous block of the batch. Use a num_partitions that divides"
        " the number of devices per host, or a multiple of it."
      )
    covered = hi
  return slices.index(rows_of[this_process]), len(slices)


def data_slice(partitioner=None) -> Tuple[int, int]:
  """(index, count) of the slice of the examples this process reads and feeds: on the
  partitioner's mesh as `host_data_slice` says; without one, every process works alone."""
  import jax

  if jax.process_count() == 1:
    return 0, 1
  if partitioner is None:
    return jax.process_index(), jax.process_count()
  return host_data_slice(partitioner.batch_sharding, partitioner.data_parallel_size)


def global_batch(local: Mapping[str, np.ndarray], batch_sharding, num_slices: int) -> dict:
  """This slice's rows -> global jax.Arrays laid out by `batch_sharding` (leading axis over
  'data'); slices in index order make up the global batch, `num_slices` times the local rows."""
  import jax

  out = {}
  for k, v in local.items():
    v = np.asarray(v)
    out[k] = jax.make_array_from_process_local_data(
      batch_sharding, v, (v.shape[0] * num_slices,) + v.shape[1:]
    )
  return out


def allgather_json(obj: Any, allgather: Optional[Callable] = None) -> List[Any]:
  """[obj of host 0, obj of host 1, ...]; every host must call this at the same point.

  `allgather` (numpy array -> [hosts, ...] array) defaults to JAX's process_allgather; a single
  host returns `[obj]` without any collective.
  """
  if allgather is None:
    import jax

    if jax.process_count() == 1:
      return [obj]
    from jax.experimental import multihost_utils

    allgather = multihost_utils.process_allgather
  data = np.frombuffer(json.dumps(obj).encode("utf-8"), np.uint8)
  sizes = np.asarray(allgather(np.array([data.size], np.int64))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[: data.size] = data
  gathered = np.asarray(allgather(padded)).reshape(len(sizes), -1)
  return [json.loads(bytes(gathered[h, : int(n)]).decode("utf-8")) for h, n in enumerate(sizes)]


def raise_if_any_failed(error: Optional[BaseException], what: str) -> None:
  """Every process learns whether `what` failed anywhere, so none waits forever in a collective
  for a host that already stopped. Re-raises this process's own error, naming the process."""
  import jax

  if jax.process_count() == 1:
    if error is not None:
      raise error
    return
  from jax.experimental import multihost_utils

  failed = np.asarray(
    multihost_utils.process_allgather(np.array([error is not None], np.int32))
  ).reshape(-1)
  if error is not None:
    raise DistributedError(f"{describe_process()}: {what} failed: {error}") from error
  bad = [i for i, f in enumerate(failed) if f]
  if bad:
    raise DistributedError(
      f"{what} failed on process{'es' if len(bad) > 1 else ''} "
      f"{', '.join(map(str, bad))} (see {'their' if len(bad) > 1 else 'its'} "
      "error); this process stops too."
    )


def check_shared_directory(path: str) -> None:
  """Multi-host checkpoints need a directory every host sees (NFS, Filestore, a gcsfuse mount):
  process 0 writes a marker, every other process must find it."""
  import jax

  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils

  token = int(
    multihost_utils.broadcast_one_to_all(np.int64(int.from_bytes(os.urandom(6), "little")))
  )
  marker = os.path.join(path, f".t0jax_shared_{token}")
  if jax.process_index() == 0:
    with open(marker, "w") as f:
      f.write("written by process 0\n")
  multihost_utils.sync_global_devices(f"t0jax shared-dir write {token}")
  seen = os.path.exists(marker)
  missing = np.asarray(multihost_utils.process_allgather(np.array([not seen], np.int32)))
  multihost_utils.sync_global_devices(f"t0jax shared-dir read {token}")
  if jax.process_index() == 0:
    os.remove(marker)
  bad = [i for i, m in enumerate(missing.reshape(-1)) if m]
  if bad:
    raise DistributedError(
      f"--model_dir {path!r} is not shared between hosts: process(es) "
      f"{', '.join(map(str, bad))} cannot see a file process 0 wrote there. Every host must "
      "write its part of each checkpoint to the same directory: use a filesystem all hosts "
      "mount (NFS, Filestore, a gcsfuse mount of a bucket)."
    )
