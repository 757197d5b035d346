"""Rank-classification throughput: `t0jax eval`'s evaluator against the t-zero approach.

Two synthetic tasks with inputs of about 200 tokens (150 to 250, random ids): one with 4 answer
choices per example, one with 2 (1 to 8 tokens + EOS each). Both sides load the same random T5
v1.1 weights (written once as a Hugging Face checkpoint) and score every choice by its summed
token log-probabilities; the scores of both are compared, so they provably compute the same.

- t0jax: `t0jax.evaluation.evaluate` on a registered SeqIO task (the code `t0jax eval` runs):
  each input encoded once, choices packed into decoder rows, length-bucketed batches.
- t-zero: Hugging Face transformers (PyTorch) as t-zero evaluates: batches of 8 examples in
  dataset order, the input repeated once per choice, padded to the longest in the batch, one
  forward pass with the choices as labels, log-softmax, masked sum (`use_cache=False`).

Each side runs in its own subprocess, pinned to the same CPUs. Untimed warm-up first (t0jax: one
pass per task, which compiles and caches the tokenised inputs, reported as "cold"; PyTorch: one
batch); the timed figure is the median of `--repeats` passes.

  python bench/eval_rank.py                    # T5 v1.1 small, 32 examples per task, 2 threads
  python bench/eval_rank.py --size tiny --examples 64 --json out.json

The last line is always `ratio t0jax/t-zero examples/s: X.XXx`.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT = "EVAL_BENCH_RESULT "
TASKS = {"4-choice": 4, "2-choice": 2}
TZERO_BATCH = 8  # t-zero's default per-device evaluation batch (examples)


def make_data(num_examples: int, vocab_size: int, seed: int) -> dict:
  import numpy as np
  rng = np.random.default_rng(seed)
  data = {}
  for name, num_choices in TASKS.items():
    rows = []
    for _ in range(num_examples):
      inputs = rng.integers(2, vocab_size, int(rng.integers(150, 251))).tolist()
      choices = [rng.integers(2, vocab_size, int(rng.integers(1, 9))).tolist() + [1]
                 for _ in range(num_choices)]
      rows.append({"inputs": inputs, "choices": choices,
                   "answer_idx": int(rng.integers(num_choices))})
    data[name] = rows
  return data


def _limit_cpus(threads: int) -> None:
  # XLA sizes its thread pool from the CPU affinity; PyTorch also gets set_num_threads.
  allowed = sorted(os.sched_getaffinity(0))
  if not 1 <= threads <= len(allowed):
    raise SystemExit(f"--threads {threads}: this machine allows 1..{len(allowed)}.")
  os.sched_setaffinity(0, allowed[:threads])


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _timed(run, repeats: int, warmup=None) -> dict:
  """Wall-clock seconds (the figure) and CPU seconds (which other processes sharing the machine
  disturb less) of `repeats` passes, after an untimed warm-up."""
  (warmup or run)()  # compilation, caches, allocator
  times, cpu = [], []
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), _cpu_seconds()
    run()
    times.append(time.perf_counter() - start)
    cpu.append(_cpu_seconds() - start_cpu)
  return {"median_s": statistics.median(times), "times_s": times,
          "median_cpu_s": statistics.median(cpu)}


def worker_t0jax(spec: dict) -> dict:
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  import jax
  import numpy as np
  import seqio
  import tensorflow as tf
  from t0jax.checkpoints import load_hf_checkpoint
  from t0jax.evaluation import evaluate
  from t0jax.model import Transformer

  tf.config.set_visible_devices([], "GPU")
  cfg, params = load_hf_checkpoint(spec["weights"])
  params = jax.device_put(params)
  data = json.loads(Path(spec["data"]).read_text())
  vocabulary = seqio.PassThroughVocabulary(cfg.vocab_size)
  out = {}
  for name, rows in data.items():
    task = f"bench_eval_rank_{name.replace('-', '_')}"
    _register(task, rows, vocabulary, seqio, tf)
    run = lambda: evaluate(Transformer(cfg), params, cfg, task, batch_size=spec["batch_size"],
                           per_example=True)
    start = time.perf_counter()
    first = run()
    cold = time.perf_counter() - start
    timing = _timed(run, spec["repeats"])
    scores = [e["scores"] for e in first["examples"][task]]
    out[name] = {**timing, "cold_s": cold, "examples": len(rows), "scores": scores[:8],
                 "accuracy": first["prompts"][task]["metrics"]["accuracy"]}
  return out


def _register(name, rows, vocabulary, seqio, tf):
  """A SeqIO task whose examples are already tokenised (inputs, ragged choices, gold index)."""
  signature = {"inputs": tf.TensorSpec([None], tf.int32), "targets": tf.TensorSpec([None], tf.int32),
               "choices": tf.RaggedTensorSpec([None, None], tf.int32),
               "answer_idx": tf.TensorSpec([], tf.int32), "idx": tf.TensorSpec([], tf.int64),
               "inputs_pretokenized": tf.TensorSpec([], tf.string),
               "targets_pretokenized": tf.TensorSpec([], tf.string),
               "choices_pretokenized": tf.TensorSpec([None], tf.string)}

  def generate():
    for i, r in enumerate(rows):
      yield {"inputs": r["inputs"], "targets": r["choices"][r["answer_idx"]],
             "choices": tf.ragged.constant(r["choices"], dtype=tf.int32), "answer_idx": r["answer_idx"],
             "idx": i, "inputs_pretokenized": "", "targets_pretokenized": str(r["answer_idx"]),
             "choices_pretokenized": [str(j) for j in range(len(r["choices"]))]}

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_generator(generate, output_signature=signature)

  features = {"inputs": seqio.Feature(vocabulary, add_eos=False),
              "targets": seqio.Feature(vocabulary, add_eos=True)}
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(name, seqio.FunctionDataSource(dataset_fn, splits=["validation"]),
                         output_features=features)


def worker_tzero(spec: dict) -> dict:
  import torch
  import transformers
  torch.set_num_threads(spec["threads"])
  transformers.logging.set_verbosity_error()
  model = transformers.T5ForConditionalGeneration.from_pretrained(spec["weights"]).eval()
  data = json.loads(Path(spec["data"]).read_text())
  out = {}
  for name, rows in data.items():
    scores = []

    def run(limit=None):
      scores.clear()
      for start in range(0, limit or len(rows), TZERO_BATCH):
        batch = rows[start:start + TZERO_BATCH]
        pairs = [(r["inputs"], c) for r in batch for c in r["choices"]]
        ids = torch.zeros((len(pairs), max(len(p[0]) for p in pairs)), dtype=torch.long)
        labels = torch.zeros((len(pairs), max(len(p[1]) for p in pairs)), dtype=torch.long)
        for k, (inputs, choice) in enumerate(pairs):
          ids[k, :len(inputs)] = torch.tensor(inputs)
          labels[k, :len(choice)] = torch.tensor(choice)
        with torch.inference_mode():
          logits = model(input_ids=ids, attention_mask=(ids > 0).long(), labels=labels,
                         use_cache=False).logits
          log_probs = torch.log_softmax(logits, dim=-1).gather(-1, labels[..., None])[..., 0]
          summed = (log_probs * (labels > 0)).sum(-1).view(len(batch), -1)
          summed.argmax(-1)
        scores.extend(summed.double().tolist())

    # PyTorch compiles nothing: one batch warms its allocator and thread pool.
    timing = _timed(run, spec["repeats"], warmup=lambda: run(TZERO_BATCH))
    out[name] = {**timing, "examples": len(rows), "scores": scores[:8]}
  return out


def _worker_main(kind: str, spec_json: str) -> None:
  spec = json.loads(spec_json)
  _limit_cpus(spec["threads"])
  result = (worker_t0jax if kind == "t0jax" else worker_tzero)(spec)
  print(RESULT + json.dumps(result), flush=True)


def _run_worker(kind: str, spec: dict) -> dict:
  cmd = [sys.executable, __file__, "--worker", kind, json.dumps(spec)]
  proc = subprocess.run(cmd, capture_output=True, text=True,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith(RESULT):
      return json.loads(line[len(RESULT):])
  raise SystemExit(f"the {kind} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _write_weights(size: str, directory: str, seed: int) -> dict:
  import jax
  from t0jax.checkpoints import save_hf_checkpoint
  from t0jax.model import get_config, init_params
  cfg = get_config(size)
  save_hf_checkpoint(jax.jit(lambda k: init_params(cfg, k))(jax.random.key(seed)), cfg, directory)
  return {"size": size, "d_model": cfg.d_model, "layers": cfg.num_layers,
          "vocab_size": cfg.vocab_size}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--size", default="small", help="T5 v1.1 size (tiny, small, base, ...)")
  p.add_argument("--examples", type=int, default=32, help="examples per task")
  p.add_argument("--batch_size", type=int, default=16, help="t0jax inputs per step")
  p.add_argument("--threads", type=int, default=min(2, len(os.sched_getaffinity(0))))
  p.add_argument("--repeats", type=int, default=1, help="timed passes per task (median)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", help="also write the figures to this file")
  args = p.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    model = _write_weights(args.size, os.path.join(tmp, "weights"), args.seed)
    data_path = os.path.join(tmp, "data.json")
    Path(data_path).write_text(json.dumps(make_data(args.examples, model["vocab_size"],
                                                    args.seed)))
    spec = {"weights": os.path.join(tmp, "weights"), "data": data_path, "threads": args.threads,
            "repeats": args.repeats, "batch_size": args.batch_size}
    results = {kind: _run_worker(kind, spec) for kind in ("t0jax", "tzero")}
  report(results, model, args)


def report(results: dict, model: dict, args) -> None:
  ours, theirs = results["t0jax"], results["tzero"]
  print(f"model: T5 v1.1 {model['size']} (d_model {model['d_model']}, {model['layers']}+"
        f"{model['layers']} layers, vocab {model['vocab_size']}), random weights; "
        f"{args.examples} examples per task, inputs 150-250 tokens; {args.threads} CPU thread(s)")
  print(f"{'task':<10} {'t0jax ex/s':>11} {'t-zero ex/s':>12} {'ratio':>7} {'CPU-s ratio':>12} "
        f"{'t0jax cold s':>13} {'max |score diff|':>17}")
  total = {"t0jax": 0.0, "tzero": 0.0, "examples": 0}
  for name in TASKS:
    a, b = ours[name], theirs[name]
    diff = max(abs(x - y) for sa, sb in zip(a["scores"], b["scores"]) for x, y in zip(sa, sb))
    rate_a, rate_b = a["examples"] / a["median_s"], b["examples"] / b["median_s"]
    cpu_ratio = b["median_cpu_s"] / a["median_cpu_s"]
    print(f"{name:<10} {rate_a:>11.2f} {rate_b:>12.2f} {rate_a / rate_b:>6.2f}x "
          f"{cpu_ratio:>11.2f}x {a['cold_s']:>13.1f} {diff:>17.2e}")
    if diff > 1e-3:
      raise SystemExit(f"{name}: the two sides' scores differ by {diff:.3g}; not comparable.")
    total["t0jax"] += a["median_s"]
    total["tzero"] += b["median_s"]
    total["examples"] += a["examples"]
  ratio = total["tzero"] / total["t0jax"]
  print(f"load average during the run: {os.getloadavg()[0]:.1f} (other processes on the machine "
        "slow both sides; the CPU-s ratio is less sensitive to them)")
  if args.json:
    Path(args.json).write_text(json.dumps({"model": model, "results": results,
                                           "ratio": ratio}, indent=1))
  print(f"ratio t0jax/t-zero examples/s: {ratio:.2f}x")


if __name__ == "__main__":
  if len(sys.argv) > 2 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    _worker_main(sys.argv[2], sys.argv[3])
  else:
    main()
