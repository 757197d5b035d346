"""Real-token training throughput on the demo mixture: `t0jax train`'s step on packed batches
against Hugging Face PyTorch with per-batch (dynamic) padding, same examples, same model config.

Both sides train on exactly the same prompted examples, in the same order, from the demo
mixture (`demo_train`, prompted inputs of a few dozen to ~400 tokens). t0jax packs them with
SeqIO's packing feature converter into fixed rows of the demo's TASK_FEATURE_LENGTHS (the
trainer's pipeline); PyTorch batches the same number of examples per step and pads each batch to its own
longest input and target. Throughput counts real (non-padding) input + target tokens only.
Both start from the same weights (t0jax's initialisation, exported to safetensors) and the same
Adafactor settings. A third process runs `t0jax train` itself on the demo experiment (its live
SeqIO pipeline reading the same mixture, global batches, metrics, TensorBoard, progress bar), so
the figure includes everything a user's run pays for. Each runs in its own process, pinned to
the same CPUs; the last line is the ratio of the whole `t0jax train` loop to PyTorch.

  python bench/train_demo.py                  # demo model (tiny T5 v1.1), ~1,500 examples
  python bench/train_demo.py --examples 3000 --threads 2 --json out.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common

LENGTHS = None  # the demo's TASK_FEATURE_LENGTHS (gin/experiments/demo.gin), set by main


def _demo_config() -> dict:
  """The demo experiment's model (gin/experiments/demo.gin), as T5Config fields."""
  import gin
  from t0jax.cli import gin_flags as gin_utils

  gin_utils.parse(["gin/experiments/demo.gin"], [], finalize=False)
  # gin's `T5Config` is t0jax.model.config.configure: a named size with the bindings on top.
  cfg = gin.get_configurable("t0jax.model.T5Config")()
  fields = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
  fields["mlp_activations"] = list(fields["mlp_activations"])
  global LENGTHS
  LENGTHS = dict(gin.query_parameter("%TASK_FEATURE_LENGTHS"))
  gin.clear_config()
  return fields


def prepare(num_examples: int, rows: int, seed: int, out: str) -> dict:
  """Draw the examples once; write the packed batches (t0jax) and the raw examples (PyTorch)."""
  from t0jax.data.tf_setup import import_tensorflow

  tf = import_tensorflow()  # quiet, no GPU for TensorFlow
  import seqio
  import t0jax.catalog  # noqa: F401

  mixture = seqio.get_mixture_or_task("demo_train")
  ds = mixture.get_dataset(
    sequence_length=LENGTHS,
    split="train",
    shuffle=True,
    seed=seed,
    num_epochs=None,
    try_in_mem_cache=False,
  ).take(num_examples)
  examples = [
    {"inputs": ex["inputs"].tolist(), "targets": ex["targets"].tolist()}
    for ex in ds.as_numpy_iterator()
  ]
  packed_ds = seqio.EncDecFeatureConverter(pack=True)(
    tf.data.Dataset.from_generator(
      lambda: ({"inputs": e["inputs"], "targets": e["targets"]} for e in examples),
      output_signature={
        "inputs": tf.TensorSpec([None], tf.int32),
        "targets": tf.TensorSpec([None], tf.int32),
      },
    ),
    LENGTHS,
  )
  packed = list(packed_ds.batch(rows, drop_remainder=False).as_numpy_iterator())
  np.savez(
    out + ".packed.npz", **{f"{i}:{k}": v for i, b in enumerate(packed) for k, v in b.items()}
  )
  with open(out + ".examples.json", "w") as f:
    json.dump(examples, f)
  return {
    "examples": len(examples),
    "packed_batches": len(packed),
    "real_tokens": sum(len(e["inputs"]) + len(e["targets"]) for e in examples),
  }


def jax_worker(args) -> dict:
  import jax
  from t0jax.train import optim
  from t0jax.checkpoints import save_hf_checkpoint
  from t0jax.model import T5Config, init_params
  from t0jax.train.state import TrainState
  from t0jax.train.trainer import make_train_step

  fields = json.loads(args.config)
  fields["mlp_activations"] = tuple(fields["mlp_activations"])
  cfg = T5Config(**fields)
  data = np.load(args.data + ".packed.npz")
  n = len({k.split(":")[0] for k in data.files})
  batches = [
    {k.split(":")[1]: data[k] for k in data.files if k.split(":")[0] == str(i)} for i in range(n)
  ]
  batches = [b for b in batches if len(b["encoder_input_tokens"]) == args.rows]  # full rows
  schedule = optim.constant_schedule(1e-3)
  tx = optim.adafactor(schedule)
  step = jax.jit(
    make_train_step(cfg, tx, schedule, 1, 1e-4, "NUM_REAL_TARGET_TOKENS", 0), donate_argnums=0
  )
  params = init_params(cfg, jax.random.key(0))
  save_hf_checkpoint(params, cfg, args.data + ".weights")  # PyTorch starts from these
  state = TrainState(np.int32(0), params, tx.init(params))
  state, m = step(state, batches[0])  # compile
  jax.block_until_ready(m)
  _common.reset_peak_rss()
  real = sum(
    int((b["encoder_input_tokens"] > 0).sum() + (b["decoder_target_tokens"] > 0).sum())
    for b in batches
  )
  start = time.perf_counter()
  for b in batches:
    state, m = step(state, b)
  jax.block_until_ready(m)
  seconds = time.perf_counter() - start
  return {
    "real_tokens": real,
    "seconds": seconds,
    "steps": len(batches),
    "examples": sum(
      len(np.unique(row[row > 0])) for b in batches for row in b["encoder_segment_ids"]
    ),
    "final_loss": float(m["loss"]),
    **_common.peak_rss_mib(),
  }


def torch_worker(args) -> dict:
  import torch
  import transformers
  from transformers.optimization import Adafactor
  from t0jax.checkpoints.hf import config_to_hf
  from t0jax.model import T5Config

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  fields = json.loads(args.config)
  fields["mlp_activations"] = tuple(fields["mlp_activations"])
  hf_cfg = transformers.T5Config(
    **{
      k: v
      for k, v in config_to_hf(T5Config(**fields)).items()
      if k not in ("architectures", "torch_dtype", "dtype")
    }
  )
  model = transformers.T5ForConditionalGeneration(hf_cfg)
  if not fields["tie_word_embeddings"]:  # transformers 5 ties the head at init even for v1.1
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
  _common.load_t0jax_weights(model, args.data + ".weights")  # t0jax's initial weights
  model.train()
  opt = Adafactor(
    model.parameters(),
    lr=1e-3,
    scale_parameter=True,
    relative_step=False,
    warmup_init=False,
    clip_threshold=1.0,
    decay_rate=-0.8,
  )
  with open(args.data + ".examples.json") as f:
    examples = json.load(f)
  per_batch = args.torch_batch
  batches = [examples[i : i + per_batch] for i in range(0, len(examples), per_batch)]

  def run(batch):
    li, lt = max(len(e["inputs"]) for e in batch), max(len(e["targets"]) for e in batch)
    enc = torch.zeros((len(batch), li), dtype=torch.long)
    labels = torch.full((len(batch), lt), -100, dtype=torch.long)
    for r, e in enumerate(batch):
      enc[r, : len(e["inputs"])] = torch.tensor(e["inputs"])
      labels[r, : len(e["targets"])] = torch.tensor(e["targets"])
    out = model(input_ids=enc, attention_mask=(enc > 0).long(), labels=labels)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return out.loss

  run(batches[0])  # warm-up
  _common.reset_peak_rss()
  real = sum(len(e["inputs"]) + len(e["targets"]) for e in examples)
  start = time.perf_counter()
  for b in batches:
    loss = run(b)
  seconds = time.perf_counter() - start
  return {
    "real_tokens": real,
    "seconds": seconds,
    "steps": len(batches),
    "examples": len(examples),
    "final_loss": float(loss),
    **_common.peak_rss_mib(),
  }


def train_worker(args) -> dict:
  """`t0jax train` itself (gin/experiments/demo.gin): live SeqIO pipeline, global batches,
  metrics. Real tokens/s from its metrics.jsonl, the first `WARMUP_WINDOWS` windows (compile,
  pipeline start) left out."""
  import gin
  from t0jax.cli import gin_flags as gin_utils
  from t0jax.train import trainer
  import t0jax.catalog  # noqa: F401

  period = 10
  steps = period * (TRAIN_WARMUP_WINDOWS + max(1, round(args.train_steps / period)))
  model_dir = args.data + ".train"
  gin_utils.parse(
    ["gin/experiments/demo.gin"],
    [
      f"MODEL_DIR={model_dir!r}",
      f"TRAIN_STEPS={steps}",
      f"LOG_PERIOD={period}",
      f"CHECKPOINT_PERIOD={steps}",
      f"BATCH_SIZE={args.rows}",
    ],
  )
  _common.reset_peak_rss()
  trainer.train()
  gin.clear_config()
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  timed = [r for r in records if "tokens_per_sec" in r][TRAIN_WARMUP_WINDOWS:]
  seconds = sum(r["seconds_per_step"] * period for r in timed)
  real = sum(r["tokens_per_sec"] * r["seconds_per_step"] * period for r in timed)
  # The data process has ended (trainer.train closes it): its peak is the children's maximum.
  import resource

  child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  return {
    "real_tokens": round(real),
    "seconds": seconds,
    "steps": period * len(timed),
    "final_loss": timed[-1]["loss"],
    "peak_rss_data_process_mib": child_kib / 1024,
    **_common.peak_rss_mib(),
  }


TRAIN_WARMUP_WINDOWS = 1


def _spawn(kind: str, args, data: str, config: str, torch_batch: int) -> dict:
  cmd = [
    sys.executable,
    __file__,
    "--_worker",
    kind,
    "--_data",
    data,
    "--_config",
    config,
    "--threads",
    str(args.threads),
    "--rows",
    str(args.rows),
    "--_torch_batch",
    str(torch_batch),
    "--train_steps",
    str(args.train_steps),
  ]
  env = {
    **os.environ,
    "CUDA_VISIBLE_DEVICES": "",
    "JAX_PLATFORMS": "cpu",
    "TF_CPP_MIN_LOG_LEVEL": "3",
  }
  proc = subprocess.run(
    cmd, capture_output=True, text=True, env=env, cwd=str(Path(__file__).resolve().parent.parent)
  )
  result = _common.parse_result(proc.stdout)
  if proc.returncode or result is None:
    raise RuntimeError(f"{kind} worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
  return result


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--examples", type=int, default=1500)
  p.add_argument(
    "--rows", type=int, default=8, help="packed rows per t0jax batch (demo.gin: BATCH_SIZE 8)"
  )
  p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", help="write the figures here")
  p.add_argument(
    "--train_steps",
    type=int,
    default=80,
    help="timed steps of the whole `t0jax train` run (after 10 warm-up steps)",
  )
  p.add_argument("--_worker")
  p.add_argument("--_data")
  p.add_argument("--_config")
  p.add_argument("--_torch_batch", type=int, dest="torch_batch")
  args = p.parse_args()
  if args._worker:
    _common.limit_cpus(args.threads)
    args.data, args.config = args._data, args._config
    workers = {"jax": jax_worker, "train": train_worker, "torch": torch_worker}
    _common.emit(workers[args._worker](args))
    return
  config = json.dumps(_demo_config())
  with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "demo")
    info = prepare(args.examples, args.rows, args.seed, data)
    # PyTorch takes as many examples per step as a packed t0jax batch holds on average.
    torch_batch = max(1, round(info["examples"] / info["packed_batches"]))
    jx = _spawn("jax", args, data, config, torch_batch)
    tr = _spawn("train", args, data, config, torch_batch)
    pt = _spawn("torch", args, data, config, torch_batch)
  rows = []
  for name, r in (
    ("t0jax step (packed)", jx),
    ("t0jax train (whole loop)", tr),
    ("pytorch (dynamic padding)", pt),
  ):
    r["tokens_per_sec"] = r["real_tokens"] / r["seconds"]
    rows.append(
      f"{name:<28} {r['steps']:>5} steps  {r['real_tokens']:>8} real tokens  "
      f"{r['seconds']:8.2f} s  {r['tokens_per_sec']:10.0f} tok/s  "
      f"final loss {r['final_loss']:6.3f}  peak RSS {r['peak_rss_process_mib']:7.0f} MiB"
      + (
        f" (+ data process {r['peak_rss_data_process_mib']:.0f} MiB)"
        if "peak_rss_data_process_mib" in r
        else ""
      )
    )
  print(
    f"demo mixture: {info['examples']} examples, {info['real_tokens']} real tokens; "
    f"t0jax {args.rows} packed rows x {LENGTHS}, PyTorch {torch_batch} examples/batch; "
    f"{args.threads} thread(s)"
  )
  print("\n".join(rows))
  step_ratio = jx["tokens_per_sec"] / pt["tokens_per_sec"]
  ratio = tr["tokens_per_sec"] / pt["tokens_per_sec"]
  if args.json:
    with open(args.json, "w") as f:
      json.dump(
        {
          "info": info,
          "t0jax": jx,
          "t0jax_train": tr,
          "pytorch": pt,
          "step_ratio": step_ratio,
          "ratio": ratio,
        },
        f,
        indent=2,
      )
  print(f"the step alone on the same packed examples: {step_ratio:.2f}x")
  print(f"ratio t0jax train/pytorch real tokens/s: {ratio:.2f}x")


if __name__ == "__main__":
  main()
