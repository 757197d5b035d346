"""Rank-classification throughput: `t0jax eval`'s evaluator against the t-zero approach.

Two synthetic tasks with inputs of about 200 tokens (150 to 250, random ids): one with 4 answer
choices per example, one with 2 (1 to 8 tokens + EOS each). Both sides load the same random T5
v1.1 weights (written once as a Hugging Face checkpoint) and score every choice by its summed
token log-probabilities; their scores are compared, so they provably compute the same thing.

- t0jax: `t0jax.evaluate.evaluate` on a registered SeqIO task (the code `t0jax eval` runs):
  each input encoded once, choices packed into decoder rows, length-bucketed batches, data
  parallel over one XLA CPU device per thread (`--xla_force_host_platform_device_count`).
- t-zero: Hugging Face transformers (PyTorch) as t-zero evaluates: batches of 8 examples in
  dataset order, the input repeated once per choice, padded to the longest in the batch, one
  forward pass with the choices as labels, log-softmax, masked sum (`use_cache=False`).

Each side runs in its own long-lived subprocess, pinned to the same CPUs, and the two take turns:
one pass of t0jax, then one of t-zero, `--repeats` times per task, so load from other processes
on a shared machine falls on both alike. Each pair of passes gives a ratio; the figures are
medians. Warm-up first (t0jax: one pass per task, which compiles and caches the tokenised inputs,
reported as "cold"; PyTorch: one batch).

  python bench/eval_rank.py                    # T5 v1.1 small, 32 examples per task, 2 threads
  python bench/eval_rank.py --size tiny --examples 64 --repeats 5 --json out.json

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
      choices = [
        rng.integers(2, vocab_size, int(rng.integers(1, 9))).tolist() + [1]
        for _ in range(num_choices)
      ]
      rows.append(
        {"inputs": inputs, "choices": choices, "answer_idx": int(rng.integers(num_choices))}
      )
    data[name] = rows
  return data


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _measure(run) -> dict:
  start, start_cpu = time.perf_counter(), _cpu_seconds()
  scores = run()
  return {
    "wall_s": time.perf_counter() - start,
    "cpu_s": _cpu_seconds() - start_cpu,
    "scores": scores[:8],
  }


# --- the t0jax side ----------------------------------------------------------------------------


def t0jax_side(spec: dict):
  """(warm-up, pass) functions per task, for the t0jax evaluator."""
  import jax
  import seqio
  import tensorflow as tf
  from t0jax.checkpoints import load_hf_checkpoint
  from t0jax.evaluate import evaluate
  from t0jax.model import Transformer, logical_axes
  from t0jax.parallel.partitioning import Partitioner

  tf.config.set_visible_devices([], "GPU")
  cfg, params = load_hf_checkpoint(spec["weights"])
  # As `t0jax eval` runs by default: data parallel over every device (here one per CPU core).
  partitioner = Partitioner(1)
  params = jax.device_put(params, partitioner.shardings(logical_axes(cfg)))
  vocabulary = seqio.PassThroughVocabulary(cfg.vocab_size)
  passes = {}
  for name, rows in json.loads(Path(spec["data"]).read_text()).items():
    task = f"bench_eval_rank_{name.replace('-', '_')}"
    _register(task, rows, vocabulary, seqio, tf)

    def run(task=task):
      results = evaluate(
        Transformer(cfg),
        params,
        cfg,
        task,
        batch_size=spec["batch_size"],
        per_example=True,
        partitioner=partitioner,
      )
      return [e["scores"] for e in results["examples"][task]]

    passes[name] = (run, run)
  return passes


def _register(name, rows, vocabulary, seqio, tf):
  """A SeqIO task whose examples are already tokenised (inputs, ragged choices, gold index)."""
  signature = {
    "inputs": tf.TensorSpec([None], tf.int32),
    "targets": tf.TensorSpec([None], tf.int32),
    "choices": tf.RaggedTensorSpec([None, None], tf.int32),
    "answer_idx": tf.TensorSpec([], tf.int32),
    "idx": tf.TensorSpec([], tf.int64),
    "inputs_pretokenized": tf.TensorSpec([], tf.string),
    "targets_pretokenized": tf.TensorSpec([], tf.string),
    "choices_pretokenized": tf.TensorSpec([None], tf.string),
  }

  def generate():
    for i, r in enumerate(rows):
      yield {
        "inputs": r["inputs"],
        "targets": r["choices"][r["answer_idx"]],
        "choices": tf.ragged.constant(r["choices"], dtype=tf.int32),
        "answer_idx": r["answer_idx"],
        "idx": i,
        "inputs_pretokenized": "",
        "targets_pretokenized": str(r["answer_idx"]),
        "choices_pretokenized": [str(j) for j in range(len(r["choices"]))],
      }

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_generator(generate, output_signature=signature)

  features = {
    "inputs": seqio.Feature(vocabulary, add_eos=False),
    "targets": seqio.Feature(vocabulary, add_eos=True),
  }
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(
    name, seqio.FunctionDataSource(dataset_fn, splits=["validation"]), output_features=features
  )


# --- the t-zero side ---------------------------------------------------------------------------


def tzero_side(spec: dict):
  """(warm-up, pass) functions per task, scoring as t-zero's PyTorch evaluation does."""
  import torch
  import transformers

  torch.set_num_threads(spec["threads"])
  transformers.logging.set_verbosity_error()
  model = transformers.T5ForConditionalGeneration.from_pretrained(spec["weights"]).eval()

  def score(rows):
    scores = []
    for start in range(0, len(rows), TZERO_BATCH):
      batch = rows[start : start + TZERO_BATCH]
      pairs = [(r["inputs"], c) for r in batch for c in r["choices"]]
      ids = torch.zeros((len(pairs), max(len(p[0]) for p in pairs)), dtype=torch.long)
      labels = torch.zeros((len(pairs), max(len(p[1]) for p in pairs)), dtype=torch.long)
      for k, (inputs, choice) in enumerate(pairs):
        ids[k, : len(inputs)] = torch.tensor(inputs)
        labels[k, : len(choice)] = torch.tensor(choice)
      with torch.inference_mode():
        logits = model(
          input_ids=ids, attention_mask=(ids > 0).long(), labels=labels, use_cache=False
        ).logits
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, labels[..., None])[..., 0]
        summed = (log_probs * (labels > 0)).sum(-1).view(len(batch), -1)
        summed.argmax(-1)  # the prediction
      scores.extend(summed.double().tolist())
    return scores

  data = json.loads(Path(spec["data"]).read_text())
  # PyTorch compiles nothing: one batch warms its allocator and thread pool.
  return {
    name: (lambda rows=rows: score(rows[:TZERO_BATCH]), lambda rows=rows: score(rows))
    for name, rows in data.items()
  }


def _worker_main(kind: str, spec_json: str) -> None:
  """Serve passes on request: one JSON command per stdin line, one result line per command."""
  spec = json.loads(spec_json)
  allowed = sorted(os.sched_getaffinity(0))
  os.sched_setaffinity(0, allowed[: spec["threads"]])  # XLA sizes its pool from the affinity
  passes = (t0jax_side if kind == "t0jax" else tzero_side)(spec)
  print(RESULT + json.dumps({"ready": True}), flush=True)
  for line in sys.stdin:
    command = json.loads(line)
    warmup, run = passes[command["task"]]
    result = _measure(warmup if command["op"] == "warmup" else run)
    print(RESULT + json.dumps(result), flush=True)


class _Worker:
  def __init__(self, kind: str, spec: dict):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    if kind == "t0jax":
      # XLA runs one CPU device's program on little more than one core; one device per core,
      # data parallel, uses them all (docs/evaluation.md).
      env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={spec['cpu_devices']}"
      )
    self.kind = kind
    # A file, not a pipe: a chatty worker must never block on a full stderr pipe.
    self.log = tempfile.TemporaryFile("w+")
    self.proc = subprocess.Popen(
      [sys.executable, __file__, "--worker", kind, json.dumps(spec)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=self.log,
      text=True,
      env=env,
    )
    self._read()

  def _read(self) -> dict:
    for line in self.proc.stdout:
      if line.startswith(RESULT):
        return json.loads(line[len(RESULT) :])
    self.log.seek(0)
    raise SystemExit(
      f"the {self.kind} worker failed (exit {self.proc.wait()}):\n{self.log.read()[-3000:]}"
    )

  def ask(self, op: str, task: str) -> dict:
    self.proc.stdin.write(json.dumps({"op": op, "task": task}) + "\n")
    self.proc.stdin.flush()
    return self._read()

  def close(self):
    self.proc.stdin.close()
    self.proc.wait()


def _write_weights(size: str, directory: str, seed: int) -> dict:
  import jax
  from t0jax.checkpoints import save_hf_checkpoint
  from t0jax.model import get_config, init_params

  cfg = get_config(size)
  save_hf_checkpoint(jax.jit(lambda k: init_params(cfg, k))(jax.random.key(seed)), cfg, directory)
  return {
    "size": size,
    "d_model": cfg.d_model,
    "layers": cfg.num_layers,
    "vocab_size": cfg.vocab_size,
  }


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--size", default="small", help="T5 v1.1 size (tiny, small, base, ...)")
  p.add_argument("--examples", type=int, default=32, help="examples per task")
  p.add_argument("--batch_size", type=int, default=16, help="t0jax inputs per step")
  p.add_argument("--threads", type=int, default=min(2, len(os.sched_getaffinity(0))))
  p.add_argument("--cpu_devices", type=int, help="XLA CPU devices for t0jax (default: --threads)")
  p.add_argument("--repeats", type=int, default=3, help="timed pass pairs per task (median)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", help="also write the figures to this file")
  args = p.parse_args(argv)
  if not 1 <= args.threads <= len(os.sched_getaffinity(0)):
    raise SystemExit(
      f"--threads {args.threads}: this machine allows 1..{len(os.sched_getaffinity(0))}."
    )
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  with tempfile.TemporaryDirectory() as tmp:
    model = _write_weights(args.size, os.path.join(tmp, "weights"), args.seed)
    data_path = os.path.join(tmp, "data.json")
    Path(data_path).write_text(json.dumps(make_data(args.examples, model["vocab_size"], args.seed)))
    spec = {
      "weights": os.path.join(tmp, "weights"),
      "data": data_path,
      "threads": args.threads,
      "batch_size": args.batch_size,
      "cpu_devices": args.cpu_devices or args.threads,
    }
    workers = {kind: _Worker(kind, spec) for kind in ("t0jax", "tzero")}
    results = {}
    for name in TASKS:
      cold = workers["t0jax"].ask("warmup", name)["wall_s"]
      workers["tzero"].ask("warmup", name)
      pairs = [
        {kind: w.ask("run", name) for kind, w in workers.items()} for _ in range(args.repeats)
      ]
      results[name] = {"cold_s": cold, "examples": args.examples, "pairs": pairs}
    for w in workers.values():
      w.close()
  report(results, model, args)


def report(results: dict, model: dict, args) -> None:
  print(
    f"model: T5 v1.1 {model['size']} (d_model {model['d_model']}, {model['layers']}+"
    f"{model['layers']} layers, vocab {model['vocab_size']}), random weights; "
    f"{args.examples} examples per task, inputs 150-250 tokens; {args.threads} CPU "
    f"thread(s); t0jax: {args.cpu_devices or args.threads} XLA CPU device(s), batch "
    f"{args.batch_size}; {args.repeats} interleaved pass pairs per task"
  )
  print(
    f"{'task':<10} {'t0jax ex/s':>11} {'t-zero ex/s':>12} {'ratio':>7} {'CPU-s ratio':>12} "
    f"{'t0jax cold s':>13} {'max |score diff|':>17}"
  )
  for name, r in results.items():
    pairs, n = r["pairs"], r["examples"]
    diff = max(
      abs(x - y)
      for pair in pairs[:1]
      for a, b in zip(pair["t0jax"]["scores"], pair["tzero"]["scores"])
      for x, y in zip(a, b)
    )
    if diff > 1e-3:
      raise SystemExit(f"{name}: the two sides' scores differ by {diff:.3g}; not comparable.")
    ours = statistics.median(n / p["t0jax"]["wall_s"] for p in pairs)
    theirs = statistics.median(n / p["tzero"]["wall_s"] for p in pairs)
    pair_ratios = [p["tzero"]["wall_s"] / p["t0jax"]["wall_s"] for p in pairs]
    cpu = statistics.median(p["tzero"]["cpu_s"] / p["t0jax"]["cpu_s"] for p in pairs)
    r.update(
      t0jax_examples_per_s=ours,
      tzero_examples_per_s=theirs,
      ratio=statistics.median(pair_ratios),
      cpu_ratio=cpu,
      max_score_diff=diff,
    )
    print(
      f"{name:<10} {ours:>11.2f} {theirs:>12.2f} {r['ratio']:>6.2f}x {cpu:>11.2f}x "
      f"{r['cold_s']:>13.1f} {diff:>17.2e}"
    )
  # Both tasks have the same number of examples: the ratio of total time over a pass pair.
  totals = [
    sum(results[t]["pairs"][k]["tzero"]["wall_s"] for t in results)
    / sum(results[t]["pairs"][k]["t0jax"]["wall_s"] for t in results)
    for k in range(args.repeats)
  ]
  ratio = statistics.median(totals)
  print(
    f"load average at the end: {os.getloadavg()[0]:.1f} (other processes slow both sides; "
    "passes alternate so both see the same load)"
  )
  if args.json:
    Path(args.json).write_text(
      json.dumps({"model": model, "results": results, "ratio": ratio, "args": vars(args)}, indent=1)
    )
  print(f"ratio t0jax/t-zero examples/s: {ratio:.2f}x")


if __name__ == "__main__":
  if len(sys.argv) > 2 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    _worker_main(sys.argv[2], sys.argv[3])
  else:
    main()
