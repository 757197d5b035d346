"""SeqIO caches: finding them, checking them against their task, and writing one.

A SeqIO cache of a task is `<cache_dir>/<task>/` with `<split>.tfrecord-SSSSS-of-NNNNN`,
`info.<split>.json` (features: shape and dtype), `stats.<split>.json` and `COMPLETED`: what
`seqio_cache_tasks` writes, and what P3's original layout holds per task (without `COMPLETED`).
A catalogue task reads its cache instead of rendering when it is read with `use_cached=True`
(T5X's USE_CACHED_TASKS); seqio then applies only the preprocessors after the task's
`CacheDatasetPlaceholder`.

The catalogue's tasks are built like t-zero's: tokenize, append EOS, cache placeholder; then,
after the cache, `trim_keeping_eos` cuts sequences to the requested lengths. A cache written from
a t0jax task and P3's caches therefore hold the same features.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Optional, Sequence

import numpy as np

from t0jax.data.tf_setup import import_tensorflow

tf = import_tensorflow()  # quiet, no GPUs for TensorFlow
import seqio  # noqa: E402

from t0jax.data import settings  # noqa: E402


class CacheError(ValueError):
  """A cache that is missing or does not fit its task; the message names both."""


@seqio.map_over_dataset
def _trim_keeping_eos(example, lengths: Mapping[str, int], eos_features: Mapping[str, int]):
  out = dict(example)
  for key, eos_id in eos_features.items():
    if key not in example or key not in lengths:
      continue
    v, n = example[key], lengths[key]
    # Longer than the length: keep n-1 tokens and end with EOS, as append_eos_after_trim would
    # have done on the sequence without its EOS.
    out[key] = tf.cond(
      tf.size(v) > n,
      lambda v=v, n=n, e=eos_id: tf.concat([v[: n - 1], [tf.cast(e, v.dtype)]], 0),
      lambda v=v: v,
    )
  return out


def trim_keeping_eos(
  dataset: tf.data.Dataset,
  output_features: Mapping[str, seqio.Feature],
  sequence_length: Optional[Mapping[str, int]] = None,
) -> tf.data.Dataset:
  """Post-cache step: features that carry EOS (`add_eos=True`) and are longer than
  `sequence_length` are cut to it with EOS kept last (seqio's own trim would cut the EOS off)."""
  if not sequence_length:
    return dataset
  eos = {k: f.vocabulary.eos_id for k, f in output_features.items() if f.add_eos}
  lengths = {k: int(v) for k, v in sequence_length.items() if v is not None}
  return _trim_keeping_eos(dataset, lengths=lengths, eos_features=eos)


def add_settings_cache_dirs() -> list:
  """Make seqio search the directories of `settings.cache_dirs()` (T0JAX_SEQIO_CACHE_DIRS,
  `--seqio_additional_cache_dirs`); returns seqio's whole list."""
  seqio.add_global_cache_dirs(settings.cache_dirs())
  return list(seqio.utils.get_global_cache_dirs())


def _task_folder(cache_dir: str, task_name: str) -> str:
  return os.path.join(cache_dir, seqio.utils.get_task_dir_from_name(task_name))


def locate(task: seqio.Task) -> Optional[str]:
  """The task's cache folder, or None. seqio only accepts folders holding `COMPLETED`; P3's
  caches lack that file, so a folder with the task's `info.*.json` is accepted too."""
  if task.cache_dir:
    return task.cache_dir
  for root in seqio.utils.get_global_cache_dirs():
    folder = _task_folder(root, task.name)
    if tf.io.gfile.glob(os.path.join(folder, "info.*.json")):
      # seqio 0.0.20 keeps the found folder in `_cache_dir` and has no public setter.
      task._cache_dir = folder  # pylint: disable=protected-access
      return folder
  return None


def _expected(task: seqio.Task) -> dict:
  """{feature: (dtype, rank)} the task's post-cache steps need from its cache."""
  return {k: (tf.as_dtype(f.dtype).name, f.rank) for k, f in task.output_features.items()}


def check_cache(task: seqio.Task, split: str) -> str:
  """The task's cache folder for `split`, after checking its `info.<split>.json` against the
  task's output features. CacheError names the task, the file and the mismatch."""
  folder = locate(task)
  if folder is None:
    searched = ", ".join(seqio.utils.get_global_cache_dirs()) or "none given"
    raise CacheError(
      f"task {task.name}: USE_CACHED_TASKS is set but no cache directory holds "
      f"{task.name}/ (searched: {searched}). Write the cache with seqio_cache_tasks, add its "
      "directory with --seqio_additional_cache_dirs (or T0JAX_SEQIO_CACHE_DIRS), or read the "
      "task live with USE_CACHED_TASKS=False."
    )
  info_path = seqio.utils.get_cached_info_path(folder, split)
  if not tf.io.gfile.exists(info_path):
    have = sorted(
      os.path.basename(p)[len("info.") : -len(".json")]
      for p in tf.io.gfile.glob(os.path.join(folder, "info.*.json"))
    )
    raise CacheError(
      f"task {task.name}: its cache {folder} has no split {split!r} "
      f"({os.path.basename(info_path)} is missing; it holds {', '.join(have)})."
    )
  try:
    with tf.io.gfile.GFile(info_path) as f:
      features = json.load(f)["features"]
  except (ValueError, KeyError) as e:
    raise CacheError(
      f"task {task.name}: {info_path} is not a SeqIO cache info file ({type(e).__name__}: {e})."
    ) from e
  for name, (dtype, rank) in _expected(task).items():
    got = features.get(name)
    if got is None:
      raise CacheError(
        f"task {task.name}: {info_path} has no feature {name!r} (it has "
        f"{', '.join(sorted(features))}); the cache was written for another task. "
        "Rewrite it with seqio_cache_tasks, or read the task live "
        "(USE_CACHED_TASKS=False)."
      )
    got_rank = len(got.get("shape") or [])
    # seqio's caches from before its versioned dtypes stored int32 as int64 and cast back.
    got_dtype = "int32" if got.get("dtype") == "int64" and dtype == "int32" else got.get("dtype")
    if (got_dtype, got_rank) != (dtype, rank):
      raise CacheError(
        f"task {task.name}: {info_path} stores {name!r} as {got.get('dtype')} with shape "
        f"{got.get('shape')}, but the task needs {dtype} with rank {rank} (a tokenized "
        "sequence); the cache was written by another task or before tokenization. Rewrite it "
        "with seqio_cache_tasks, or read the task live (USE_CACHED_TASKS=False)."
      )
  return folder


def check_cached_tasks(tasks: Sequence[seqio.Task], split: str) -> None:
  """Before a cached read: every task that can be cached has a matching cache for `split`.
  (Tasks without a CacheDatasetPlaceholder are read live, as seqio does.)"""
  add_settings_cache_dirs()
  for task in tasks:
    if task.supports_caching:
      check_cache(task, split)


def _info_entry(value) -> dict:
  t = tf.constant(value)
  shape = t.shape.as_list()
  return {"shape": [None] + shape[1:] if shape else [], "dtype": t.dtype.name}


def write_cache(
  task: seqio.Task,
  split: str,
  cache_dir: str,
  num_shards: int = 1,
  max_examples: Optional[int] = None,
) -> str:
  """Write `task`'s `split` as a SeqIO cache under `cache_dir/<task>/`, in the layout and
  feature encoding of seqio's `seqio_cache_tasks` (its beam pipeline needs apache-beam, which
  t0jax does not depend on): the source read in order, the preprocessors up to the
  CacheDatasetPlaceholder applied, each example serialised by `seqio.utils.dict_to_tfexample`.
  Files are written under temporary names and renamed, `COMPLETED` last. `max_examples` keeps
  the first N examples only (a smaller cache for tests and benchmarks)."""
  if not task.supports_caching:
    raise CacheError(f"task {task.name} has no CacheDatasetPlaceholder: it cannot be cached.")
  folder = _task_folder(cache_dir, task.name)
  tf.io.gfile.makedirs(folder)
  ds = task.preprocess_precache(task.source.get_dataset(split=split, shuffle=False), seed=0)
  if max_examples is not None:
    ds = ds.take(max_examples)
  prefix = seqio.utils.get_cached_tfrecord_prefix(folder, split)
  paths = [f"{prefix}-{k:05d}-of-{num_shards:05d}" for k in range(num_shards)]
  writers = [tf.io.TFRecordWriter(p + ".tmp") for p in paths]
  info, stats, count = {}, {}, 0
  for ex in ds.as_numpy_iterator():
    if not info:
      info = {k: _info_entry(v) for k, v in ex.items()}
    # Bools as int64, as TF Examples store them (today's protobuf refuses Python bools there).
    stored = {
      k: v.astype("int64") if getattr(v, "dtype", None) == np.dtype(bool) else v
      for k, v in ex.items()
    }
    writers[count % num_shards].write(seqio.utils.dict_to_tfexample(stored).SerializeToString())
    count += 1
    for name, feature in task.output_features.items():
      if name in ex and getattr(ex[name], "dtype", None) in ("int32", "int64"):
        ids = ex[name]
        n = int(((ids != feature.vocabulary.eos_id) & (ids != 0)).sum())
        stats[f"{name}_tokens"] = stats.get(f"{name}_tokens", 0) + n
        stats[f"{name}_max_tokens"] = max(stats.get(f"{name}_max_tokens", 0), n)
  for w in writers:
    w.close()
  for p in paths:
    tf.io.gfile.rename(p + ".tmp", p, overwrite=True)
  _write_json(
    seqio.utils.get_cached_info_path(folder, split),
    {"num_shards": num_shards, "features": info, "seqio_version": seqio.__version__},
  )
  _write_json(seqio.utils.get_cached_stats_path(folder, split), {"examples": count, **stats})
  _write_json(os.path.join(folder, "COMPLETED"), None)
  return folder


def _write_json(path: str, value) -> None:
  with tf.io.gfile.GFile(path + ".tmp", "w") as f:
    f.write("" if value is None else json.dumps(value, indent=2))
  tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
