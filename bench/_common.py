"""What the benchmark workers share: the run spec, the fixed batch, timing, threads, memory.

Nothing here imports JAX or PyTorch: each worker process imports only its own framework, so
neither one's threads, allocator or import footprint leaks into the other's figures.
"""

import dataclasses
import json
import os
import resource
import statistics
import time
from typing import Callable, List, Optional

import numpy as np

RESULT_PREFIX = "BENCH_RESULT "
# The raw matrix product the CPU gap was first measured on: [8192, 256] x [256, 1024], fp32.
MATMUL_SHAPE = (8192, 256, 1024)


@dataclasses.dataclass
class Spec:
  """Everything a worker needs, passed as JSON on its command line."""

  mode: str  # "train" or "matmul"
  config: dict  # t0jax T5Config fields (train mode)
  batch: int = 8
  input_len: int = 256
  target_len: int = 64
  steps: int = 10
  warmup: int = 3
  dtype: str = "float32"
  threads: int = 1
  platform: str = "cpu"
  seed: int = 0
  weights_dir: Optional[str] = None  # the jax worker writes it, the torch worker reads it
  breakdown: bool = False
  matmul_shape: tuple = MATMUL_SHAPE

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, text: str) -> "Spec":
    fields = json.loads(text)
    fields["matmul_shape"] = tuple(fields["matmul_shape"])
    return cls(**fields)


def fixed_batch(spec: Spec, vocab_size: int):
  """The same random tokens for both frameworks: no padding, no EOS, ids in [2, vocab).

  Returns (encoder tokens, decoder inputs, targets) as int32; decoder inputs are the targets
  shifted right behind the start token 0, as in training.
  """
  rng = np.random.default_rng(spec.seed)
  enc = rng.integers(2, vocab_size, (spec.batch, spec.input_len), dtype=np.int32)
  targets = rng.integers(2, vocab_size, (spec.batch, spec.target_len), dtype=np.int32)
  dec_in = np.concatenate([np.zeros((spec.batch, 1), np.int32), targets[:, :-1]], axis=1)
  return enc, dec_in, targets


def limit_cpus(threads: int) -> List[int]:
  """Pin this process to `threads` CPUs before a framework starts its thread pools.

  XLA sizes its CPU thread pool from the process's CPU affinity and has no thread-count flag, so
  affinity is the one knob that limits both frameworks alike; PyTorch also gets set_num_threads.
  """
  allowed = sorted(os.sched_getaffinity(0))
  if threads < 1 or threads > len(allowed):
    raise ValueError(
      f"--threads {threads}: this process may use {len(allowed)} CPU(s) "
      f"{allowed}; pass a number from 1 to {len(allowed)}."
    )
  chosen = allowed[:threads]
  if len(chosen) < len(allowed):
    os.sched_setaffinity(0, chosen)
  return chosen


_peak_before_reset_kib = 0


def _vm_hwm_kib() -> int:
  """The kernel's peak resident set size of this process, in KiB (0 where /proc is missing)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
  except OSError:
    pass
  return 0


def reset_peak_rss() -> bool:
  """Restart the kernel's peak-RSS counter (Linux), so the next peak covers only what follows.

  The reset also clears getrusage's ru_maxrss, so the peak so far is kept for the whole-process
  figure.
  """
  global _peak_before_reset_kib
  _peak_before_reset_kib = max(_peak_before_reset_kib, _vm_hwm_kib())
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def peak_rss_mib() -> dict:
  """Peak resident memory (MiB): since the last reset (`steps`) and over the whole process."""
  since_reset = _vm_hwm_kib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return {
    "peak_rss_steps_mib": since_reset / 1024,
    "peak_rss_process_mib": max(since_reset, _peak_before_reset_kib) / 1024,
  }


def _cpu_busy_s(cpus: List[int]) -> Optional[float]:
  """Seconds the given CPUs spent busy (any process) since boot, from /proc/stat."""
  try:
    with open("/proc/stat") as f:
      lines = {ln.split()[0]: ln.split()[1:] for ln in f if ln.startswith("cpu")}
  except OSError:
    return None
  tick = os.sysconf("SC_CLK_TCK")
  busy = 0
  for cpu in cpus:
    fields = [int(v) for v in lines.get(f"cpu{cpu}", [])[:8]]
    if len(fields) < 8:
      return None
    busy += sum(fields) - fields[3] - fields[4]  # all but idle and iowait
  return busy / tick


class CpuMonitor:
  """How much CPU this process used, and how much *other* processes took from its CPUs.

  Other work on the same cores distorts both frameworks (OpenMP's spin-waiting suffers most), so
  the figures are only comparable when `other_cores` stays near zero.
  """

  def __init__(self, cpus: List[int]):
    self.cpus = cpus

  def __enter__(self):
    self.wall = time.perf_counter()
    self.own = _own_cpu_s()
    self.busy = _cpu_busy_s(self.cpus)
    return self

  def __exit__(self, *exc):
    wall = time.perf_counter() - self.wall
    own = _own_cpu_s() - self.own
    busy = _cpu_busy_s(self.cpus)
    self.result = {
      "own_cores": own / wall,
      "other_cores": None
      if busy is None or self.busy is None
      else max(0.0, (busy - self.busy - own) / wall),
    }


def _own_cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def time_calls(fn: Callable[[], object], warmup: int, steps: int) -> List[float]:
  """Wall-clock seconds of `steps` calls after `warmup` untimed ones; `fn` must block."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def summarise(times: List[float]) -> dict:
  return {
    "median_s": statistics.median(times),
    "min_s": min(times),
    "max_s": max(times),
    "times_s": times,
  }


def emit(result: dict) -> None:
  """The worker's one machine-readable line; everything else on stdout/stderr is chatter."""
  print(RESULT_PREFIX + json.dumps(result), flush=True)


def parse_result(stdout: str) -> Optional[dict]:
  for line in reversed(stdout.splitlines()):
    if line.startswith(RESULT_PREFIX):
      return json.loads(line[len(RESULT_PREFIX) :])
  return None


def matmul_flops(shape) -> float:
  m, k, n = shape
  return 2.0 * m * k * n


def load_t0jax_weights(model, weights_dir: str) -> None:
  """Loads the weights t0jax exported (`save_hf_checkpoint`) into a transformers T5, so both
  sides of a benchmark start from the same parameters. For v1.1 the caller gives the model its
  own output head first (transformers 5 ties it to the embedding at init)."""
  from pathlib import Path
  from safetensors.torch import load_file

  state = {}
  for shard in sorted(Path(weights_dir).glob("*.safetensors")):
    state.update(load_file(str(shard)))
  missing, unexpected = model.load_state_dict(state, strict=False)
  aliases = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
  if unexpected or set(missing) - aliases:
    raise RuntimeError(
      f"t0jax's exported weights do not fit the HF model: missing "
      f"{sorted(set(missing) - aliases)}, unexpected {sorted(unexpected)}."
    )
