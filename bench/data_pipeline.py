"""Is the input pipeline ever the bottleneck? Examples/s produced by the trainer's pipeline
(SeqIO mixture -> prompt rendering -> tokenisation -> packing -> host batch) against examples/s
consumed by the compiled train step, for the demo experiment, in one run.

  python bench/data_pipeline.py              # demo.gin: demo_train, its BATCH_SIZE x (512, 32) packed rows
  python bench/data_pipeline.py --batches 40 --json out.json
  python bench/data_pipeline.py --cached     # the same pipeline from a SeqIO cache vs live

The last line is `ratio pipeline/train-step examples/s: X.XXx` (above 1: the step waits on nothing);
with --cached, `ratio cached/live pipeline examples/s: X.XXx` (the cache is written first, in
seqio's format, from the first --cache_examples examples of each task's train split).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _examples(batch) -> int:
  return int(sum(len(np.unique(row[row > 0])) for row in batch["encoder_segment_ids"]))


def _pipeline_rate(data, batches: int):
  """(examples/s over `batches` batches after the first, seconds to the first batch, first)."""
  t0 = time.perf_counter()
  it = data.host_batches()
  first = next(it)
  startup = time.perf_counter() - t0
  t0 = time.perf_counter()
  produced = sum(_examples(next(it)) for _ in range(batches))
  return produced / (time.perf_counter() - t0), startup, first


def _cached_vs_live(data, args) -> None:
  """The mixture read from a SeqIO cache of its tasks against the live (rendering) pipeline."""
  import dataclasses
  import tempfile
  import seqio
  from t0jax.data import caches
  from t0jax.catalog import get_task_or_mixture

  cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="t0jax_bench_cache_")
  t0 = time.perf_counter()
  for task in get_task_or_mixture(data.mixture_or_task_name).tasks:
    if not os.path.exists(os.path.join(cache_dir, task.name, "COMPLETED")):
      caches.write_cache(task, data.split, cache_dir, max_examples=args.cache_examples)
  print(
    f"cache: {cache_dir} ({args.cache_examples} examples per task; "
    f"{time.perf_counter() - t0:.1f} s to write what was missing)"
  )
  seqio.add_global_cache_dirs([cache_dir])
  live_rate, live_start, _ = _pipeline_rate(data, args.batches)
  cached = dataclasses.replace(data, use_cached=True, cache_dirs=(cache_dir,))
  cached_rate, cached_start, _ = _pipeline_rate(cached, args.batches)
  figures = {
    "live_examples_per_s": live_rate,
    "live_startup_s": live_start,
    "cached_examples_per_s": cached_rate,
    "cached_startup_s": cached_start,
    "ratio": cached_rate / live_rate,
  }
  print(f"live:   {live_rate:9.1f} examples/s (first batch after {live_start:.1f} s)")
  print(f"cached: {cached_rate:9.1f} examples/s (first batch after {cached_start:.1f} s)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(figures, f, indent=2)
  print(f"ratio cached/live pipeline examples/s: {figures['ratio']:.2f}x")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batches", type=int, default=30)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--json")
  p.add_argument(
    "--cached",
    action="store_true",
    help="compare the pipeline reading a SeqIO cache with the live one",
  )
  p.add_argument(
    "--cache_examples",
    type=int,
    default=1000,
    help="--cached: examples per task written to the cache",
  )
  p.add_argument("--cache_dir", help="--cached: reuse (or fill) this cache directory")
  args = p.parse_args()
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  import gin
  import jax
  from t0jax.cli import gin_flags as gin_utils
  from t0jax.train import optim
  from t0jax.train.input_pipeline import TrainData
  from t0jax.model import init_params
  from t0jax.train.state import TrainState
  from t0jax.train.trainer import make_train_step
  import t0jax.catalog  # noqa: F401

  gin_utils.parse(["gin/experiments/demo.gin"], [], finalize=False)
  name = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
  lengths = gin.query_parameter("%TASK_FEATURE_LENGTHS")
  batch_size = gin.query_parameter("%BATCH_SIZE")
  from t0jax.model import config as model_config

  cfg = gin.get_configurable(model_config.configure)()  # the model the gin file binds

  shards = gin.query_parameter("%NUM_VIRTUAL_SHARDS")
  data = TrainData(name, lengths, batch_size, seed=0, num_virtual_shards=shards)
  if args.cached:
    return _cached_vs_live(data, args)
  pipe_rate, startup, first = _pipeline_rate(data, args.batches)

  schedule = optim.constant_schedule(1e-3)
  tx = optim.adafactor(schedule)
  step = jax.jit(
    make_train_step(cfg, tx, schedule, 1, 1e-4, "NUM_REAL_TARGET_TOKENS", 0), donate_argnums=0
  )
  params = init_params(cfg, jax.random.key(0))
  state = TrainState(np.int32(0), params, tx.init(params))
  state, m = step(state, first)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(args.steps):
    state, m = step(state, first)
  jax.block_until_ready(m)
  step_s = (time.perf_counter() - t0) / args.steps
  step_rate = _examples(first) / step_s
  figures = {
    "pipeline_examples_per_s": pipe_rate,
    "pipeline_startup_s": startup,
    "train_step_s": step_s,
    "train_step_examples_per_s": step_rate,
    "examples_per_batch": _examples(first),
    "ratio": pipe_rate / step_rate,
  }
  print(f"{name}: {batch_size} packed rows x {lengths}, {_examples(first)} examples per batch")
  print(f"pipeline:   {pipe_rate:9.1f} examples/s (first batch after {startup:.1f} s)")
  print(f"train step: {step_rate:9.1f} examples/s ({step_s:.3f} s/step)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(figures, f, indent=2)
  print(f"ratio pipeline/train-step examples/s: {figures['ratio']:.2f}x")


if __name__ == "__main__":
  main()
