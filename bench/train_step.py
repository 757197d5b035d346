"""Training-step throughput of t0jax (JAX/XLA) against Hugging Face PyTorch, in one run.

One step is forward + backward + Adafactor update of a T5 v1.1 encoder-decoder on a fixed batch
of random tokens (no padding). Each framework runs in its own subprocess with the same CPU
threads; both start from the same weights and the first step's losses are compared, so the two
sides provably compute the same thing. Warm-up steps are excluded; the median step is reported.

  python bench/train_step.py                      # T5 v1.1 small, batch 8, 256 -> 64 tokens, fp32
  python bench/train_step.py --dtype bfloat16 --breakdown --json out.json
  python bench/train_step.py --matmul             # the raw 8192x256x1024 fp32 matmul, both sides

The last line is always `ratio t0jax/pytorch <what>: X.XXx`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench._common` importable
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common
from bench._common import Spec

# The default shape: T5 v1.1 small (d_model 512, 8+8 layers, 6 heads x 64, d_ff 1024, vocab
# 32128), batch 8 x (256 + 64) tokens. About 360 GFLOP per step; under 4 minutes on 2 cores.
DEFAULT_SIZE = "small"
# The loss check: fp32 sides agree to float rounding; bf16 autocast and bf16 XLA round differently.
LOSS_TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2}


# ---------------------------------------------------------------------------------------------
# Workers (each runs in its own process)


def _adafactor_settings():
  """T5X's Adafactor: factored second moments, decay 0.8, update clipping 1.0, parameter scale."""
  return dict(
    learning_rate=1e-3,
    decay_rate=0.8,
    clipping_threshold=1.0,
    multiply_by_parameter_scale=True,
    factored=True,
    min_dim_size_to_factor=128,
  )


def jax_train(spec: Spec) -> dict:
  import jax
  import jax.numpy as jnp
  import optax

  from t0jax.checkpoints import save_hf_checkpoint
  from t0jax.model.losses import cross_entropy_with_z_loss, loss_normalizer
  from t0jax.model import T5Config, Transformer, init_params

  cfg = T5Config(**spec.config)
  model = Transformer(cfg)
  params = init_params(cfg, jax.random.key(spec.seed))
  if spec.weights_dir:
    save_hf_checkpoint(params, cfg, spec.weights_dir)
  tx = optax.adafactor(**_adafactor_settings())
  opt_state = tx.init(params)
  enc, dec_in, targets = (jnp.asarray(a) for a in _common.fixed_batch(spec, cfg.vocab_size))
  rngs = {"dropout": jax.random.key(spec.seed + 1)} if cfg.dropout_rate > 0 else None

  def loss_fn(p):
    logits = model.apply(
      {"params": p}, enc, dec_in, targets, enable_dropout=rngs is not None, rngs=rngs
    )
    weights = (targets > 0).astype(jnp.float32)
    loss, z = cross_entropy_with_z_loss(logits, targets, weights, z_loss=1e-4)
    norm = loss_normalizer(weights)
    return jnp.sum(loss) / norm, jnp.sum(loss - z) / norm

  def train_step(p, state):
    (_, ce), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, state = tx.update(grads, state, p)
    return optax.apply_updates(p, updates), state, ce

  step = jax.jit(train_step, donate_argnums=(0, 1))
  first_loss = None

  def run():
    nonlocal params, opt_state, first_loss
    params, opt_state, ce = jax.block_until_ready(step(params, opt_state))
    if first_loss is None:
      first_loss = float(ce)

  result = _measure(run, spec)
  if spec.breakdown:  # after the timed steps: their loss check needs the untouched weights
    result["breakdown"] = _jax_breakdown(spec, jax, optax, tx, loss_fn, params, opt_state)
  result.update(first_loss=first_loss, num_params=cfg.num_params(), backend=jax.default_backend())
  return result


def _measure(run, spec: Spec) -> dict:
  """The first call (compilation, optimizer-state allocation) timed alone, then `warmup` untimed
  and `steps` timed calls. Peak memory is counted from after the first call: the steady state."""
  start = time.perf_counter()
  run()
  first = time.perf_counter() - start
  _common.reset_peak_rss()
  with _common.CpuMonitor(sorted(os.sched_getaffinity(0))) as cpu:
    times = _common.time_calls(run, spec.warmup, spec.steps)
  return dict(_common.summarise(times), first_step_s=first, **cpu.result, **_common.peak_rss_mib())


def _jax_breakdown(spec, jax, optax, tx, loss_fn, params, opt_state) -> dict:
  """Forward, forward+backward and the optimizer update alone, each compiled on its own."""
  fwd = jax.jit(lambda p: loss_fn(p)[0])
  grad = jax.jit(jax.grad(lambda p: loss_fn(p)[0]))
  grads = grad(params)

  def update(p, state, g):
    updates, state = tx.update(g, state, p)
    return optax.apply_updates(p, updates), state

  upd = jax.jit(update)
  parts = {
    "forward": lambda: jax.block_until_ready(fwd(params)),
    "forward+backward": lambda: jax.block_until_ready(grad(params)),
    "optimizer": lambda: jax.block_until_ready(upd(params, opt_state, grads)),
  }
  return {
    name: _common.summarise(_common.time_calls(fn, 1 + spec.warmup, spec.steps))["median_s"]
    for name, fn in parts.items()
  }


def torch_train(spec: Spec) -> dict:
  import torch
  import transformers
  from transformers.optimization import Adafactor

  torch.set_num_threads(spec.threads)
  transformers.logging.set_verbosity_error()
  device = "cuda" if spec.platform == "gpu" else "cpu"
  model = _torch_model(spec, torch, transformers).to(device)
  model.train()
  opt = Adafactor(
    model.parameters(),
    lr=1e-3,
    eps=(1e-30, 1e-3),
    clip_threshold=1.0,
    decay_rate=-0.8,
    beta1=None,
    weight_decay=0.0,
    scale_parameter=True,
    relative_step=False,
    warmup_init=False,
  )
  enc, dec_in, targets = (
    torch.as_tensor(a, dtype=torch.long, device=device)
    for a in _common.fixed_batch(spec, spec.config["vocab_size"])
  )
  mask = (enc > 0).long()
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=spec.dtype == "bfloat16")
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def loss():
    with autocast:
      return model(
        input_ids=enc, attention_mask=mask, decoder_input_ids=dec_in, labels=targets
      ).loss

  first_loss = None

  def run():
    nonlocal first_loss
    value = loss()
    value.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync()
    if first_loss is None:
      first_loss = float(value.detach())

  result = _measure(run, spec)
  if spec.breakdown:
    result["breakdown"] = _torch_breakdown(spec, torch, model, opt, loss, sync)
  result.update(
    first_loss=first_loss, num_params=sum(p.numel() for p in model.parameters()), backend=device
  )
  return result


def _torch_model(spec: Spec, torch, transformers):
  """HF T5 v1.1 with its own, unscaled output head, loaded with the jax side's weights."""
  c = spec.config
  hf_cfg = transformers.T5Config(
    vocab_size=c["vocab_size"],
    d_model=c["d_model"],
    d_kv=c["head_dim"],
    d_ff=c["d_ff"],
    num_heads=c["num_heads"],
    num_layers=c["num_layers"],
    num_decoder_layers=c["num_decoder_layers"] or c["num_layers"],
    relative_attention_num_buckets=c["relative_attention_num_buckets"],
    relative_attention_max_distance=c["relative_attention_max_distance"],
    dropout_rate=c["dropout_rate"],
    layer_norm_epsilon=c["layer_norm_epsilon"],
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
  )
  torch.manual_seed(spec.seed)
  model = transformers.T5ForConditionalGeneration(hf_cfg)
  # transformers 5 ties lm_head to the embedding even for v1.1: give the head its own weights,
  # as the checkpoints (and t0jax) have, so both sides update the same parameters.
  model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
  if model.config.scale_decoder_outputs or model.lm_head.weight is model.shared.weight:
    raise RuntimeError(
      "the HF model still ties or rescales its output head; the comparison "
      "would not be like for like (check the transformers version)."
    )
  if spec.weights_dir:
    _common.load_t0jax_weights(model, spec.weights_dir)
  return model


def _torch_breakdown(spec, torch, model, opt, loss, sync) -> dict:
  def forward():
    with torch.no_grad():
      loss()
    sync()

  def forward_backward():
    loss().backward()
    sync()
    model.zero_grad(set_to_none=True)

  loss().backward()  # the optimizer step alone needs gradients in place; they stay there

  def optimizer():
    opt.step()
    sync()

  parts = {"forward": forward, "forward+backward": forward_backward, "optimizer": optimizer}
  out = {}
  for name, fn in parts.items():
    out[name] = _common.summarise(_common.time_calls(fn, 1 + spec.warmup, spec.steps))["median_s"]
    if name == "forward+backward":
      loss().backward()
  opt.zero_grad(set_to_none=True)
  return out


def jax_matmul(spec: Spec) -> dict:
  import jax
  import jax.numpy as jnp

  m, k, n = spec.matmul_shape
  ka, kb = jax.random.split(jax.random.key(spec.seed))
  a = jax.random.normal(ka, (m, k), spec.dtype)
  b = jax.random.normal(kb, (k, n), spec.dtype)
  dot = jax.jit(jnp.dot)
  return _timed(lambda: dot(a, b).block_until_ready(), spec)


def torch_matmul(spec: Spec) -> dict:
  import torch

  torch.set_num_threads(spec.threads)
  device = "cuda" if spec.platform == "gpu" else "cpu"
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  m, k, n = spec.matmul_shape
  g = torch.Generator().manual_seed(spec.seed)
  dtype = getattr(torch, spec.dtype)
  a = torch.randn(m, k, generator=g).to(device, dtype)
  b = torch.randn(k, n, generator=g).to(device, dtype)

  def run():
    torch.mm(a, b)
    sync()

  return _timed(run, spec)


def _timed(run, spec: Spec) -> dict:
  with _common.CpuMonitor(sorted(os.sched_getaffinity(0))) as cpu:
    times = _common.time_calls(run, 1 + spec.warmup, spec.steps)
  return dict(_common.summarise(times), **cpu.result)


WORKERS = {
  ("jax", "train"): jax_train,
  ("torch", "train"): torch_train,
  ("jax", "matmul"): jax_matmul,
  ("torch", "matmul"): torch_matmul,
}


def worker_main(framework: str, spec_json: str) -> None:
  spec = Spec.from_json(spec_json)
  cpus = _common.limit_cpus(spec.threads)
  result = WORKERS[framework, spec.mode](spec)
  result.update(framework=framework, cpus=cpus)
  _common.emit(result)


# ---------------------------------------------------------------------------------------------
# The driver: one subprocess per framework, then the table.

NAMES = {"jax": "t0jax (JAX)", "torch": "PyTorch (HF)"}


def run_worker(framework: str, spec: Spec) -> dict:
  env = dict(
    os.environ,
    OMP_NUM_THREADS=str(spec.threads),
    MKL_NUM_THREADS=str(spec.threads),
    TF_CPP_MIN_LOG_LEVEL="2",
  )
  if spec.platform == "cpu":
    env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
  cmd = [
    sys.executable,
    str(Path(__file__).resolve()),
    "--_worker",
    framework,
    "--_spec",
    spec.to_json(),
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  result = _common.parse_result(proc.stdout)
  if proc.returncode != 0 or result is None:
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
    raise SystemExit(f"The {NAMES[framework]} worker failed (exit code {proc.returncode}):\n{tail}")
  return result


def build_spec(args) -> Spec:
  from t0jax.model import get_config

  try:
    cfg = get_config(args.size, dtype=args.dtype, dropout_rate=args.dropout)
  except ValueError as e:
    raise SystemExit(f"--size: {e}")
  for flag in ("batch", "input_len", "target_len", "steps", "threads"):
    if getattr(args, flag) is not None and getattr(args, flag) < 1:
      raise SystemExit(f"--{flag} must be at least 1, got {getattr(args, flag)}.")
  if args.warmup < 0:
    raise SystemExit(f"--warmup must be 0 or more, got {args.warmup}.")
  try:
    matmul_shape = tuple(int(v) for v in args.matmul_shape.split(","))
  except ValueError:
    matmul_shape = ()
  if len(matmul_shape) != 3 or min(matmul_shape) < 1:
    raise SystemExit(
      f"--matmul_shape {args.matmul_shape!r}: give three positive integers M,K,N "
      "(e.g. 8192,256,1024)."
    )
  steps = args.steps or (20 if args.matmul else 5)
  return Spec(
    mode="matmul" if args.matmul else "train",
    config=cfg.__dict__.copy(),
    batch=args.batch,
    input_len=args.input_len,
    target_len=args.target_len,
    steps=steps,
    warmup=args.warmup,
    dtype=args.dtype,
    threads=args.threads,
    platform=args.platform,
    seed=args.seed,
    breakdown=args.breakdown,
    matmul_shape=matmul_shape,
  )


def _row(label, values, fmt):
  cells = ["-" if v is None else fmt.format(v) for v in values]
  return f"{label:<28}" + "".join(f"{c:>16}" for c in cells)


def report_train(spec: Spec, res: dict, args) -> dict:
  c = spec.config
  tokens = spec.batch * (spec.input_len + spec.target_len)
  sides = [res["jax"], res["torch"]]
  for r in sides:
    r["tokens_per_s"] = tokens / r["median_s"]
  ratio = sides[0]["tokens_per_s"] / sides[1]["tokens_per_s"]
  print(
    f"T5 v1.1 '{args.size}': d_model {c['d_model']}, {c['num_layers']}+"
    f"{c['num_decoder_layers'] or c['num_layers']} layers, {c['num_heads']} heads x "
    f"{c['head_dim']}, d_ff {c['d_ff']}, vocab {c['vocab_size']}, "
    f"{sides[0]['num_params'] / 1e6:.1f}M params, dropout {c['dropout_rate']}"
  )
  print(
    f"batch {spec.batch} x ({spec.input_len} + {spec.target_len}) tokens, {spec.dtype}, "
    f"{spec.platform} x {spec.threads} threads, {spec.warmup} warm-up + {spec.steps} timed "
    f"steps (median)"
  )
  print(_row("", [NAMES["jax"], NAMES["torch"]], "{}"))
  print(_row("step time (s)", [r["median_s"] for r in sides], "{:.3f}"))
  print(_row("step time min-max (s)", [f"{r['min_s']:.2f}-{r['max_s']:.2f}" for r in sides], "{}"))
  print(_row("tokens/s", [r["tokens_per_s"] for r in sides], "{:.0f}"))
  print(_row("first step (s)", [r["first_step_s"] for r in sides], "{:.1f}"))
  print(_row("peak RSS, steps (MiB)", [r["peak_rss_steps_mib"] for r in sides], "{:.0f}"))
  print(_row("peak RSS, process (MiB)", [r["peak_rss_process_mib"] for r in sides], "{:.0f}"))
  print(_row("first-step loss", [r["first_loss"] for r in sides], "{:.5f}"))
  for part in ("forward", "forward+backward", "optimizer"):
    if "breakdown" in sides[0]:
      print(_row(f"  {part} alone (s)", [r["breakdown"][part] for r in sides], "{:.3f}"))
  _print_cpu_rows(sides)
  check = loss_check(spec, sides)
  print(f"loss check: {check['verdict']}")
  summary = {
    "tokens_per_step": tokens,
    "ratio_tokens_per_s": ratio,
    "loss_check": check,
    "machine_busy": _warn_if_busy(sides),
  }
  print(f"ratio t0jax/pytorch tokens/s: {ratio:.2f}x")
  return summary


# Other processes' CPU use (in cores) beyond which the two sides are not comparable.
BUSY_CORES = 0.25


def _print_cpu_rows(sides) -> None:
  print(_row("CPU cores used", [r["own_cores"] for r in sides], "{:.2f}"))
  print(_row("other processes (cores)", [r["other_cores"] for r in sides], "{:.2f}"))


def _warn_if_busy(sides) -> bool:
  busy = [r["other_cores"] for r in sides if (r["other_cores"] or 0) > BUSY_CORES]
  if busy:
    print(
      f"WARNING: other processes used up to {max(busy):.2f} CPU cores on this benchmark's "
      "CPUs while it ran; the figures above are not a fair comparison. Rerun on a quiet "
      "machine."
    )
  return bool(busy)


def loss_check(spec: Spec, sides) -> dict:
  """Same weights, same batch: the first step's cross entropy must agree."""
  if spec.weights_dir is None or spec.config["dropout_rate"] > 0:
    why = "weights not shared" if spec.weights_dir is None else "dropout draws differ"
    return {"ok": None, "verdict": f"not compared ({why})"}
  a, b = sides[0]["first_loss"], sides[1]["first_loss"]
  diff = abs(a - b) / max(1.0, abs(b))
  ok = diff <= LOSS_TOLERANCE[spec.dtype]
  verdict = (
    f"{'ok' if ok else 'FAILED'}: relative difference {diff:.1e} "
    f"(tolerance {LOSS_TOLERANCE[spec.dtype]:.0e})"
  )
  return {"ok": ok, "relative_difference": diff, "verdict": verdict}


def report_matmul(spec: Spec, res: dict) -> dict:
  m, k, n = spec.matmul_shape
  sides = [res["jax"], res["torch"]]
  for r in sides:
    r["gflop_per_s"] = _common.matmul_flops(spec.matmul_shape) / r["median_s"] / 1e9
  ratio = sides[0]["gflop_per_s"] / sides[1]["gflop_per_s"]
  print(
    f"matmul [{m} x {k}] @ [{k} x {n}], {spec.dtype}, {spec.platform} x {spec.threads} "
    f"threads, {spec.warmup} warm-up + {spec.steps} timed calls (median)"
  )
  print(_row("", ["JAX (XLA)", "PyTorch"], "{}"))
  print(_row("time (ms)", [r["median_s"] * 1e3 for r in sides], "{:.2f}"))
  print(_row("GFLOP/s", [r["gflop_per_s"] for r in sides], "{:.1f}"))
  _print_cpu_rows(sides)
  busy = _warn_if_busy(sides)
  print(f"ratio t0jax/pytorch GFLOP/s: {ratio:.2f}x")
  return {"ratio_gflop_per_s": ratio, "machine_busy": busy}


def parse_args(argv=None):
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument(
    "--size",
    default=DEFAULT_SIZE,
    help="a named t0jax size (tiny, small, base, large, xl, xxl); default: small",
  )
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--input_len", type=int, default=256)
  p.add_argument("--target_len", type=int, default=64)
  p.add_argument(
    "--steps", type=int, default=None, help="timed steps (default 5; 20 calls with --matmul)"
  )
  p.add_argument("--warmup", type=int, default=2, help="untimed steps after the first one")
  p.add_argument(
    "--dtype",
    choices=("float32", "bfloat16"),
    default="float32",
    help="activations (parameters and optimizer stay float32 on both sides)",
  )
  p.add_argument(
    "--threads",
    type=int,
    default=len(os.sched_getaffinity(0)),
    help="CPU threads for both frameworks (default: all this process may use)",
  )
  p.add_argument(
    "--dropout", type=float, default=0.0, help="dropout rate on both sides (T0 fine-tunes with 0.1)"
  )
  p.add_argument("--platform", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--breakdown",
    action="store_true",
    help="also time forward, forward+backward and the optimizer update alone",
  )
  p.add_argument(
    "--fresh_weights",
    action="store_true",
    help="initialise each side on its own instead of sharing weights through a "
    "safetensors file (skips the loss check; for models too big to write)",
  )
  p.add_argument(
    "--matmul",
    action="store_true",
    help="instead: the [M, K] x [K, N] matmul microbenchmark, in --dtype",
  )
  p.add_argument(
    "--matmul_shape",
    default="%d,%d,%d" % _common.MATMUL_SHAPE,
    metavar="M,K,N",
    help="the matmul's shape (default %(default)s)",
  )
  p.add_argument("--json", metavar="OUT", help="also write every figure to this JSON file")
  p.add_argument("--_worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
  p.add_argument("--_spec", help=argparse.SUPPRESS)
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  if args._worker:
    worker_main(args._worker, args._spec)
    return 0
  spec = build_spec(args)
  with tempfile.TemporaryDirectory(prefix="t0jax-bench-") as tmp:
    if spec.mode == "train" and not args.fresh_weights:
      spec.weights_dir = str(Path(tmp) / "weights")
    res = {fw: run_worker(fw, spec) for fw in ("jax", "torch")}
  summary = report_matmul(spec, res) if spec.mode == "matmul" else report_train(spec, res, args)
  if args.json:
    out = {
      "settings": {**spec.__dict__, "size": args.size, "weights_dir": None},
      "t0jax": res["jax"],
      "pytorch": res["torch"],
      **summary,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
  check = summary.get("loss_check", {})
  return 1 if check.get("ok") is False else 0


if __name__ == "__main__":
  sys.exit(main())
