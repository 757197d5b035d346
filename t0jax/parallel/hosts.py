"""Multi-host plumbing for evaluation: which shard this host reads, and gathering small Python
values from every host.

Each slice of hosts scores only its shard; results travel once, at the end, as JSON. Records
are keyed by (example index, slice, position): examples that share an `idx` (or a task without
one) never collide, and hosts of one model-parallel group, which score the same slice, send equal
records that are merged. t5's rank-classification metric failed on duplicate indices instead.
"""
import json
from typing import Any, Callable, List, Optional, Tuple

import numpy as np


def data_slice(partitioner=None) -> Tuple[int, int]:
  """(index, count) of the slice of the examples this process reads and feeds.

  Without a mesh every process works alone on its own slice. On a mesh, processes whose devices
  hold the same batch rows (a model-parallel group spanning hosts) feed the same slice, so there
  can be fewer slices than processes (t0jax.parallel.distributed.host_data_slice).
  """
  import jax
  if jax.process_count() == 1:
    return 0, 1
  if partitioner is None:
    return jax.process_index(), jax.process_count()
  from t0jax.parallel.distributed import host_data_slice
  return host_data_slice(partitioner.batch_sharding, partitioner.data_parallel_size)


def global_batch(partitioner, local: dict, num_slices: int) -> dict:
  """This slice's rows -> global arrays sharded over the mesh's 'data' axis."""
  import jax
  out = {}
  for k, v in local.items():
    v = np.asarray(v)
    out[k] = jax.make_array_from_process_local_data(
        partitioner.batch_sharding, v, (v.shape[0] * num_slices,) + v.shape[1:])
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
  padded[:data.size] = data
  gathered = np.asarray(allgather(padded)).reshape(len(sizes), -1)
  return [json.loads(bytes(gathered[h, :int(n)]).decode("utf-8")) for h, n in enumerate(sizes)]


def raise_if_any_failed(error: Optional[BaseException], what: str) -> None:
  """Stop every host when one failed (a host left waiting in a collective would hang)."""
  import jax
  if jax.process_count() == 1:
    if error is not None:
      raise error
    return
  from t0jax.parallel.distributed import raise_if_any_failed as stop_all
  stop_all(error, what)
