"""Training batches: SeqIO mixture -> packed encoder-decoder features -> this host's rows.

The global batch is assembled from a fixed number of *virtual shards*. Each virtual shard is the
mixture read with `seqio.ShardInfo(k, num_virtual_shards)`, packed and batched on its own, and
contributes `global_batch_size / num_virtual_shards` rows to every step, in shard order. Hosts take
contiguous ranges of shards, so the global batch at each step is the same whatever the number of
hosts, and a run can move between topologies and resume exactly.

The data position is the number of steps consumed. Resuming re-opens each shard's stream and skips
that many batches: exact, with a start-up cost proportional to the position (tf.data cannot seek a
Python-generated source).
"""

import dataclasses
import logging
from typing import Dict, Iterator, Mapping

import numpy as np

log = logging.getLogger(__name__)


def _tf():
  from t0jax.data.tf_setup import import_tensorflow

  return import_tensorflow()  # quiet, and never holding accelerator memory


class DataShareError(ValueError):
  """A host cannot read its share of the training data."""


@dataclasses.dataclass
class TrainData:
  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  global_batch_size: int
  seed: int = 0
  split: str = "train"
  pack: bool = True
  shuffle: bool = True
  num_virtual_shards: int = 8
  use_cached: bool = False  # read the tasks' seqio caches (USE_CACHED_TASKS)
  # Where the caches are: seqio's global cache dirs and T0JAX_SEQIO_CACHE_DIRS when not given
  # (they travel to the data process with the rest of this object).
  cache_dirs: tuple = ()

  def __post_init__(self):
    if self.use_cached and not self.cache_dirs:
      from t0jax.data import caches

      self.cache_dirs = tuple(caches.add_settings_cache_dirs())
    self.cache_dirs = tuple(self.cache_dirs)
    if self.global_batch_size % self.num_virtual_shards:
      raise ValueError(
        f"BATCH_SIZE={self.global_batch_size} must be a multiple of num_virtual_shards="
        f"{self.num_virtual_shards} (the data is read as that many fixed shards so batches do "
        "not depend on the number of hosts); change one of them."
      )

  @property
  def rows_per_shard(self) -> int:
    return self.global_batch_size // self.num_virtual_shards

  def host_shards(self, slice_index: int, num_slices: int) -> range:
    """The virtual shards of data slice `slice_index` (one slice per group of hosts that hold
    distinct batch rows; with pure data parallelism, one per process)."""
    if num_slices > self.num_virtual_shards or self.num_virtual_shards % num_slices:
      raise ValueError(
        f"The batch is split between {num_slices} hosts (data slices), which cannot share "
        f"num_virtual_shards={self.num_virtual_shards} evenly, so some host would have no or "
        f"a different share of the data. Set train.num_virtual_shards to a multiple of "
        f"{num_slices} that divides BATCH_SIZE={self.global_batch_size}."
      )
    per = self.num_virtual_shards // num_slices
    return range(slice_index * per, (slice_index + 1) * per)

  def _describe_slice(self, slice_index: int, num_slices: int) -> str:
    shards = self.host_shards(slice_index, num_slices)
    return (
      f"data slice {slice_index} of {num_slices} (virtual shards {shards.start}-"
      f"{shards.stop - 1} of {self.num_virtual_shards}) of {self.mixture_or_task_name!r}, "
      f"split {self.split!r}"
    )

  def _shard_dataset(self, shard: int, start_step: int):
    import seqio

    tf = _tf()
    from t0jax.catalog import get_task_or_mixture

    task = get_task_or_mixture(self.mixture_or_task_name)
    if self.use_cached:
      _check_caches(task, self.split, self.cache_dirs)
    ds = task.get_dataset(
      sequence_length=dict(self.task_feature_lengths),
      split=self.split,
      shuffle=self.shuffle,
      seed=self.seed,
      num_epochs=None,
      shard_info=seqio.ShardInfo(shard, self.num_virtual_shards),
      use_cached=self.use_cached,
      # Small splits would be cached in memory and replay the first epoch's
      # order; without the cache the source reshuffles each pass.
      try_in_mem_cache=False,
    )
    ds = seqio.EncDecFeatureConverter(pack=self.pack)(ds, dict(self.task_feature_lengths))
    ds = ds.batch(self.rows_per_shard, drop_remainder=True)
    if start_step:
      ds = ds.skip(start_step)
    return ds.prefetch(tf.data.AUTOTUNE)

  def host_batches(
    self, start_step: int = 0, slice_index: int = 0, num_slices: int = 1
  ) -> Iterator[Dict[str, np.ndarray]]:
    """This host's rows of each global batch, from step `start_step` on."""
    shards = self.host_shards(slice_index, num_slices)
    try:
      iters = [(k, self._shard_dataset(k, start_step).as_numpy_iterator()) for k in shards]
    except Exception as e:
      if num_slices == 1:
        raise
      raise DataShareError(
        f"Cannot open {self._describe_slice(slice_index, num_slices)}: {e}"
      ) from e
    while True:
      parts = []
      for k, it in iters:
        try:
          parts.append(next(it))
        except StopIteration:
          # A repeated stream that ends has nothing at all: this host would have no data.
          where = self._describe_slice(slice_index, num_slices)
          raise DataShareError(
            f"Virtual shard {k} yielded no examples, so {where} is empty. The split "
            f"probably has fewer examples than "
            f"num_virtual_shards={self.num_virtual_shards} (use fewer shards), or this host "
            "cannot see the data the others read."
          ) from None
      yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def state(self, step: int) -> dict:
    return {
      "step": int(step),
      "mixture_or_task_name": self.mixture_or_task_name,
      "seed": self.seed,
      "global_batch_size": self.global_batch_size,
      "num_virtual_shards": self.num_virtual_shards,
      "pack": self.pack,
      "task_feature_lengths": dict(self.task_feature_lengths),
    }

  def check_resumable(self, saved: Mapping) -> None:
    """A resumed run must read the same stream, or it would silently not be the same run."""
    now = self.state(saved.get("step", 0))
    diff = {k: (saved.get(k), v) for k, v in now.items() if k != "step" and saved.get(k) != v}
    if diff:
      details = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
      raise ValueError(
        f"The data settings differ from the checkpoint's ({details}); resuming "
        "would not continue the same run. Restore the settings or use a new "
        "--model_dir."
      )


def _check_caches(task, split: str, cache_dirs=()) -> None:
  """Every cacheable task of `task` (a task or mixture) has a cache matching its features."""
  import seqio
  from t0jax.data import caches

  seqio.add_global_cache_dirs(list(cache_dirs))
  caches.check_cached_tasks(task.tasks if isinstance(task, seqio.Mixture) else [task], split)


def check_truncation(
  name: str,
  lengths: Mapping[str, int],
  split: str = "train",
  max_examples: int = 200,
  use_cached: bool = False,
  cache_dirs=(),
) -> Dict[str, dict]:
  """Sample each task of a mixture and count examples longer than the feature lengths.

  Truncation silently changes what the model learns, so it is counted and warned about per task.
  """
  import seqio
  from t0jax.catalog import get_task_or_mixture

  task = get_task_or_mixture(name)
  tasks = task.tasks if isinstance(task, seqio.Mixture) else [task]
  report = {}
  for t in tasks:
    try:
      if use_cached:
        _check_caches(t, split, cache_dirs)
      ds = t.get_dataset(
        sequence_length=None,
        split=split,
        shuffle=False,
        num_epochs=1,
        use_cached=use_cached,
        trim_output_features=False,
        # only a sample is read: an in-memory cache would be dropped half-full
        try_in_mem_cache=False,
      )
    except Exception as e:  # noqa: BLE001 - a task without this split is reported, not fatal
      log.warning("Could not sample task %s for the truncation check: %s", t.name, e)
      continue
    seen, over = 0, {k: 0 for k in lengths}
    for ex in ds.take(max_examples).as_numpy_iterator():
      seen += 1
      for k, n in lengths.items():
        if k in ex and len(ex[k]) > n:
          over[k] += 1
    if seen and any(over.values()):
      report[t.name] = {"sampled": seen, **{f"{k}_truncated": v for k, v in over.items()}}
      parts = ", ".join(
        f"{v}/{seen} {k} longer than {lengths[k]} tokens" for k, v in over.items() if v
      )
      log.warning("Task %s: %s will be truncated (TASK_FEATURE_LENGTHS).", t.name, parts)
  return report
