"""Reading a multi-GB `pytorch_model.bin`: t0jax's torch-free reader against `torch.load`.

A synthetic T5 (HF names, fp32, written by `torch.save`, and its safetensors twin) is read
tensor by tensor into t0jax's layout, each tensor released after use, as `t0jax.checkpoints.load`
does when parameters go to accelerators or to `t0jax convert`'s output shards. The peer is
`torch.load(..., mmap=True, weights_only=True)` followed by the same layout change
(`.t().contiguous()`) on every tensor. Each reader runs in its own process (alternating, twice,
page cache warm); the figures are its time and its peak RSS above its baseline after imports
(and, for t0jax, after XLA's CPU client has started).

    python bench/checkpoint_load.py                 # T0pp's tensor sizes, 1 + 1 layers: 2.7 GiB
    python bench/checkpoint_load.py --layers 24 --d_model 1024 --d_ff 2816   # T5-large: 2.9 GiB
    python bench/checkpoint_load.py --dir /big/tmp  # where the two checkpoints are written
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

RESULT = "CHECKPOINT_LOAD "


def _config(layers: int, d_model: int = 1024, d_ff: int = 2816):
  from t0jax.model.config import T5Config

  return T5Config(
    vocab_size=32128,
    d_model=d_model,
    num_heads=d_model // 64,
    head_dim=64,
    d_ff=d_ff,
    num_layers=layers,
    num_decoder_layers=layers,
    mlp_activations=("gelu", "linear"),
    tie_word_embeddings=False,
  )


def write_checkpoints(root: str, layers: int, d_model: int, d_ff: int) -> dict:
  """`bin/pytorch_model.bin` (torch.save) and `st/model.safetensors`, the same random tensors."""
  import torch
  from safetensors.torch import save_file
  from t0jax.checkpoints import hf

  cfg = _config(layers, d_model, d_ff)
  gen = torch.Generator().manual_seed(0)
  state = {t.hf_name: torch.randn(t.hf_shape, generator=gen) for t in hf._tensors(cfg)}
  for sub in ("bin", "st"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
    with open(os.path.join(root, sub, hf.CONFIG_FILE), "w") as f:
      json.dump(hf.config_to_hf(cfg), f)
  torch.save(state, os.path.join(root, "bin", "pytorch_model.bin"))
  save_file(state, os.path.join(root, "st", "model.safetensors"))
  sizes = [v.numel() * 4 for v in state.values()]
  return {"total_bytes": sum(sizes), "largest_bytes": max(sizes), "tensors": len(sizes)}


def _rss_kib() -> int:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _worker(mode: str, root: str) -> None:
  if mode == "torch":
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
  else:
    import jax
    import numpy as np
    from t0jax.checkpoints import flax_msgpack, hf, torch_bin  # noqa: F401

    # Part of the baseline, as torch's initialised runtime is part of torch's: XLA's CPU client
    # and compiler, started by one small computation (~60 MiB of code paged in), which every
    # t0jax process that puts parameters into jax has. The transposes' own compilations (one
    # per tensor shape) are timed.
    jax.jit(lambda a: a + 1)(np.ones(4, np.float32)).block_until_ready()
  _common.reset_peak_rss()
  base = _rss_kib()
  start, checksum = time.perf_counter(), 0.0
  if mode == "torch":
    state = torch.load(os.path.join(root, "bin", "pytorch_model.bin"), mmap=True, weights_only=True)
    opened = time.perf_counter() - start
    for name, value in state.items():
      # t0jax's layout: every 2-D weight but the embedding transposed.
      x = value.clone() if name == "shared.weight" or value.dim() < 2 else value.t().contiguous()
      checksum += float(x.view(-1)[::4097].sum())
      del x
  else:
    module = torch_bin if mode == "t0jax-bin" else hf
    directory = os.path.join(root, "bin" if mode == "t0jax-bin" else "st")
    _, params = module.load_params(directory, lazy=True)
    opened = time.perf_counter() - start
    import jax

    for leaf in jax.tree.leaves(params):
      x = np.asarray(leaf)
      checksum += float(x.reshape(-1)[::4097].sum())
      del x
  seconds = time.perf_counter() - start
  peak = _common.peak_rss_mib()["peak_rss_steps_mib"]
  print(
    RESULT
    + json.dumps(
      {
        "mode": mode,
        "seconds": seconds,
        "open_seconds": opened,
        "peak_above_base_mib": peak - base / 1024,
        "checksum": checksum,
      }
    )
  )


def _run(mode: str, root: str) -> dict:
  done = subprocess.run(
    [sys.executable, __file__, "--worker", mode, "--dir", root],
    capture_output=True,
    text=True,
    env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"},
  )
  line = [s for s in done.stdout.splitlines() if s.startswith(RESULT)]
  if done.returncode or not line:
    raise SystemExit(f"{mode} worker failed:\n{done.stderr[-3000:]}")
  return json.loads(line[-1][len(RESULT) :])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--layers", type=int, default=1, help="encoder and decoder layers (default 1)")
  p.add_argument(
    "--d_model", type=int, default=4096, help="default 4096, T0pp's (T5-large's: 1024)"
  )
  p.add_argument("--d_ff", type=int, default=10240, help="default 10240, T0pp's (T5-large's: 2816)")
  p.add_argument("--dir", help="where to write the checkpoints (default: a temp dir, removed)")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--worker", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    return _worker(args.worker, args.dir)
  root = args.dir or tempfile.mkdtemp(prefix="t0jax-bench-ckpt-")
  try:
    t = time.perf_counter()
    sizes = write_checkpoints(root, args.layers, args.d_model, args.d_ff)
    print(
      f"wrote {sizes['tensors']} tensors, {sizes['total_bytes'] / 2**30:.2f} GiB (largest "
      f"{sizes['largest_bytes'] / 2**20:.0f} MiB) twice in {time.perf_counter() - t:.0f} s"
    )
    for sub, name in (("bin", "pytorch_model.bin"), ("st", "model.safetensors")):
      with open(os.path.join(root, sub, name), "rb") as f:  # warm the page cache for all
        while f.read(64 << 20):
          pass
    modes = ("t0jax-bin", "torch", "t0jax-safetensors")
    runs = {m: [] for m in modes}
    for _ in range(args.repeats):
      for m in modes:
        runs[m].append(_run(m, root))
    sums = {m: runs[m][0]["checksum"] for m in modes}
    if len({round(s, 1) for s in sums.values()}) != 1:
      raise SystemExit(f"the readers disagree on the values: checksums {sums}")
    largest = sizes["largest_bytes"] / 2**20
    best = {m: min(runs[m], key=lambda r: r["seconds"]) for m in modes}
    for m in modes:
      r, peak = best[m], max(x["peak_above_base_mib"] for x in runs[m])
      print(
        f"{m:<18} {r['seconds']:6.2f} s (open {r['open_seconds']:.2f} s)  "
        f"{sizes['total_bytes'] / 2**30 / r['seconds']:5.2f} GiB/s  peak RSS above baseline "
        f"{peak:7.0f} MiB = {peak / largest:.2f}x the largest tensor"
      )
    print(
      f"ratio t0jax/torch time (bin): "
      f"{best['t0jax-bin']['seconds'] / best['torch']['seconds']:.2f}x"
    )
  finally:
    if not args.dir:
      shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  main()
