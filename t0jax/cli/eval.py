"""`t0jax eval`: zero-shot evaluation of a checkpoint on a SeqIO mixture, T0's way.

  t0jax eval --checkpoint PATH --mixture NAME --output_dir DIR [--gin_file=F] [--gin.NAME=VALUE]

PATH is a t0jax training checkpoint (a MODEL_DIR, its checkpoints/ folder or one step folder) or
a Hugging Face T5 directory. gin/runs/eval.gin is always read first (T5X's macro names); further
gin files and --gin.NAME=VALUE bindings override it. Writes results.json, results.md, a PNG
figure and TensorBoard scalars into DIR (process 0 only). See docs/evaluation.md.
"""

import argparse
import logging
import os
import sys
from typing import Mapping, Optional

import gin

from t0jax.cli import common

_PROG = "t0jax eval"
DEFAULT_GIN = "gin/runs/eval.gin"
log = logging.getLogger("t0jax.eval")


class EvalUsageError(ValueError):
  """A flag or checkpoint that cannot be used; the message names it."""


@gin.configurable(module="t0jax")
def evaluate_checkpoint(
  *,
  checkpoint_path: str = gin.REQUIRED,
  mixture_or_task_name: str = gin.REQUIRED,
  output_dir: str = gin.REQUIRED,
  batch_size: int = 32,
  split: str = "validation",
  task_feature_lengths: Optional[Mapping[str, int]] = None,
  max_examples: Optional[int] = None,
  all_prompts: bool = True,
  calibrate: bool = False,
  calibration_input: str = "N/A",
  per_example: bool = False,
  num_partitions: int = 1,
  axis_rules="standard",
  num_devices: Optional[int] = None,
  dtype: Optional[str] = None,
  pack_choices: bool = True,
  max_decode_length: int = 64,
  num_beams: int = 1,
  length_penalty: float = 0.6,
  buckets_per_octave: int = 4,
  vocab: Optional[str] = None,
  tensorboard: bool = True,
  use_cached_tasks: bool = False,
) -> dict:
  """Load the checkpoint, evaluate it, write the reports; returns the results dict."""
  import jax
  from t0jax.data import settings as data_settings
  from t0jax.evaluate import data as eval_data
  from t0jax.evaluate import evaluate, report, resolve_tasks
  from t0jax import checkpoints
  from t0jax.data.vocab import checkpoint_vocabulary
  from t0jax.model import Transformer, logical_axes
  from t0jax.parallel.partitioning import Partitioner

  if batch_size < 1:
    raise EvalUsageError(f"EVAL_BATCH_SIZE={batch_size}: give at least 1.")
  if max_examples is not None and max_examples < 1:
    raise EvalUsageError(f"MAX_EXAMPLES={max_examples}: give at least 1 (or None for all).")
  data_settings.configure()  # gin bindings such as t0jax.data.data_dir
  if vocab:
    if not os.path.isfile(vocab):
      raise EvalUsageError(f"--vocab {vocab} does not exist.")
    data_settings.set_vocab(vocab)
  elif data_settings.vocab_path() == data_settings.DEFAULT_VOCAB:
    kept = checkpoint_vocabulary(checkpoint_path)
    if kept:
      log.info("Using the checkpoint's vocabulary %s for catalogue tasks.", kept)
      data_settings.set_vocab(kept)
  tasks = resolve_tasks(mixture_or_task_name, all_prompts)  # unknown names fail here
  info = checkpoints.read_config(checkpoint_path)
  for task in tasks:  # before the weights are read
    eval_data.check_vocabulary(task, info.cfg.vocab_size)
  devices = jax.devices()[:num_devices] if num_devices else None
  partitioner = Partitioner(num_partitions, axis_rules, devices=devices)
  cfg, params, info = checkpoints.load(
    checkpoint_path,
    shardings=lambda c: partitioner.shardings(logical_axes(c)),
    dtype=dtype,
    info=info,
  )
  step = info.step
  results = evaluate(
    Transformer(cfg),
    params,
    cfg,
    mixture_or_task_name,
    batch_size=batch_size,
    split=split,
    task_feature_lengths=task_feature_lengths,
    max_examples=max_examples,
    calibrate=calibrate,
    calibration_input=calibration_input,
    all_prompts=all_prompts,
    per_example=per_example,
    partitioner=partitioner,
    pack_choices=pack_choices,
    max_decode_length=max_decode_length,
    num_beams=num_beams,
    length_penalty=length_penalty,
    buckets_per_octave=buckets_per_octave,
    use_cached=use_cached_tasks,
  )
  results["checkpoint"] = {"path": os.path.abspath(checkpoint_path), "step": step}
  if jax.process_index() == 0:
    results["files"] = report.write_all(
      results, output_dir, checkpoint=checkpoint_path, step=step or 0, tensorboard=tensorboard
    )
  return results


def _parser() -> argparse.ArgumentParser:
  p = common.parser(
    "eval",
    "Zero-shot evaluation: every answer choice scored by summed log-likelihood (one "
    "encoder pass per input), accuracy per prompt, statistics per dataset. gin: "
    f"{DEFAULT_GIN} is read first; --gin_file and --gin.NAME=VALUE override it (T5X's "
    "--gin.CHECKPOINT_PATH, MIXTURE_OR_TASK_NAME and EVAL_OUTPUT_DIR work too).",
    gin=True,
    data=True,
    multihost=True,
  )
  p.add_argument(
    "--checkpoint",
    metavar="PATH",
    help="t0jax checkpoint (MODEL_DIR, checkpoints/ or a step dir) or HF T5 dir",
  )
  p.add_argument(
    "--mixture",
    "--mixture_or_task",
    metavar="NAME",
    help="SeqIO mixture or task, e.g. t0_eval_score_eval, demo_eval_score_eval",
  )
  p.add_argument("--output_dir", metavar="DIR", help="where the reports go")
  p.add_argument(
    "--checkpoint_steps",
    metavar="all|latest|N,M,...",
    help="evaluate several checkpoints of the run at --checkpoint: one report per "
    "step in DIR/step_N, and DIR/curve.{md,json,png}: each dataset's median "
    "accuracy against step",
  )
  p.add_argument(
    "--vocab",
    metavar="PATH",
    help="sentencepiece model for catalogue tasks "
    "(default: T0JAX_VOCAB, else the checkpoint's spiece.model)",
  )
  p.add_argument("--max_examples", type=int, metavar="N", help="first N examples of each task")
  p.add_argument("--batch_size", type=int, metavar="N", help="inputs encoded per step")
  p.add_argument("--per_example", action="store_true", help="scores of every example in JSON")
  p.add_argument(
    "--calibrate",
    action="store_true",
    help="also report accuracy calibrated by the choice's unconditional likelihood",
  )
  return p


def _flag_bindings(args) -> list:
  """(flag, gin binding) for each flag given; gin's own macros fill the rest."""
  out = common.macro_bindings(
    args,
    (
      ("--checkpoint", "CHECKPOINT_PATH"),
      ("--mixture", "MIXTURE_OR_TASK_NAME"),
      ("--output_dir", "EVAL_OUTPUT_DIR"),
      ("--max_examples", "MAX_EXAMPLES"),
      ("--batch_size", "EVAL_BATCH_SIZE"),
      ("--vocab", "VOCAB"),
    ),
  )
  if args.per_example:
    out.append(("--per_example", "PER_EXAMPLE=True"))
  if args.calibrate:
    out.append(("--calibrate", "CALIBRATE=True"))
  return out


def _required_macros() -> dict:
  values = {}
  for name, flag in (
    ("CHECKPOINT_PATH", "--checkpoint"),
    ("MIXTURE_OR_TASK_NAME", "--mixture"),
    ("EVAL_OUTPUT_DIR", "--output_dir"),
  ):
    value = gin.query_parameter(f"{name}/macro.value")
    if value is gin.REQUIRED:
      raise EvalUsageError(f"{flag} is required (or --gin.{name}=...).")
    values[name] = value
  return values


def _body(ctx: common.Context) -> int:
  # Registers the catalogue's tasks before gin locks its configuration.
  common.import_tensorflow()
  import t0jax.catalog  # noqa: F401

  ctx.parse_gin([DEFAULT_GIN], _flag_bindings(ctx.args))
  macros = _required_macros()
  if ctx.args.checkpoint_steps:
    curve = evaluate_steps(
      macros["CHECKPOINT_PATH"],
      ctx.args.checkpoint_steps,
      macros["EVAL_OUTPUT_DIR"],
      primary=ctx.primary,
    )
    if ctx.primary:
      print(curve_markdown(curve), end="")
      print(f"{_PROG}: wrote {os.path.join(macros['EVAL_OUTPUT_DIR'], CURVE_MD)}")
    return 0
  results = evaluate_checkpoint()
  if ctx.primary:
    _print_summary(results)
  return 0


def main(argv=None) -> int:
  from t0jax.checkpoints import CheckpointError
  from t0jax.evaluate import EvalDataError

  return common.run(
    "eval",
    argv,
    _parser,
    _body,
    gin=True,
    multihost=True,
    bad_input=(EvalUsageError, EvalDataError, CheckpointError),
  )


# --- several checkpoints of one run --------------------------------------------------------------

CURVE_MD, CURVE_JSON, CURVE_PNG = "curve.md", "curve.json", "curve.png"


def run_steps(path: str):
  """(checkpoints folder, its steps in order) of a t0jax run (MODEL_DIR, checkpoints/ or a step)."""
  from t0jax.checkpoints import orbax

  try:
    ckpt_dir, _ = orbax.checkpoint_location(path)
  except FileNotFoundError as e:
    raise EvalUsageError(f"--checkpoint_steps needs a t0jax run at --checkpoint: {e}") from None
  steps = sorted(
    int(d)
    for d in os.listdir(ckpt_dir)
    if d.isdigit() and os.path.isdir(os.path.join(ckpt_dir, d, "state"))
  )
  return ckpt_dir, steps


def pick_steps(spec: str, available) -> list:
  """`all`, `latest` or `N,M,...` -> the steps to evaluate (each must exist)."""
  spec = spec.strip()
  if spec == "all":
    return list(available)
  if spec == "latest":
    return list(available[-1:])
  try:
    wanted = [int(s) for s in spec.split(",") if s.strip()]
  except ValueError:
    raise EvalUsageError(
      f"--checkpoint_steps {spec!r}: give all, latest, or steps such as 1000,2000."
    ) from None
  missing = [s for s in wanted if s not in available]
  if missing or not wanted:
    raise EvalUsageError(
      f"--checkpoint_steps {spec}: no checkpoint at step(s) "
      f"{', '.join(map(str, missing)) or '(none given)'}; the run has "
      f"{', '.join(map(str, available)) or 'none'}."
    )
  return sorted(set(wanted))


def _stats(dataset: dict) -> dict:
  """The headline statistics of a dataset: accuracy, else a generative task's first metric."""
  return dataset["original_task"].get("accuracy") or next(
    (v for v in dataset["original_task"].values() if isinstance(v, dict) and "median" in v), {}
  )


def _median(dataset: dict):
  median = _stats(dataset).get("median")
  return None if median is None or median != median else float(median)


def evaluate_steps(path: str, spec: str, output_dir: str, primary: bool = True) -> dict:
  """Evaluate each chosen checkpoint into output_dir/step_N; write the curve; return it."""
  ckpt_dir, available = run_steps(path)
  steps = pick_steps(spec, available)
  curve = {"checkpoints": ckpt_dir, "steps": steps, "median_accuracy": {}}
  for step in steps:
    log.info("Evaluating step %d.", step)
    results = evaluate_checkpoint(
      checkpoint_path=os.path.join(ckpt_dir, str(step)),
      output_dir=os.path.join(output_dir, f"step_{step}"),
    )
    for name, dataset in results["datasets"].items():
      curve["median_accuracy"].setdefault(name, {})[str(step)] = _median(dataset)
  if primary:
    write_curve(curve, output_dir)
  return curve


def _mean_over_datasets(curve: dict, step: int):
  values = [v[str(step)] for v in curve["median_accuracy"].values() if v.get(str(step)) is not None]
  return sum(values) / len(values) if values else None


def curve_markdown(curve: dict) -> str:
  names = sorted(curve["median_accuracy"])
  lines = ["| step | " + " | ".join(names) + " | mean |", "|---:|" + "---:|" * (len(names) + 1)]
  for step in curve["steps"]:
    cells = [curve["median_accuracy"][n].get(str(step)) for n in names]
    mean = _mean_over_datasets(curve, step)
    lines.append(
      f"| {step} | "
      + " | ".join("-" if c is None else f"{c:.1f}" for c in cells)
      + f" | {'-' if mean is None else f'{mean:.1f}'} |"
    )
  scored = [(m, s) for s in curve["steps"] if (m := _mean_over_datasets(curve, s)) is not None]
  best = (
    f"\nBest step by the mean of the datasets' median accuracy: {max(scored)[1]}.\n"
    if scored
    else "\n"
  )
  return (
    "Median accuracy over original-task prompts (%), per dataset and checkpoint step.\n\n"
    + "\n".join(lines)
    + "\n"
    + best
  )


def _write_atomic(path: str, text: str) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def write_curve(curve: dict, output_dir: str) -> dict:
  """curve.json, curve.md and curve.png (each dataset's median accuracy against step)."""
  import json

  os.makedirs(output_dir, exist_ok=True)
  paths = {
    "json": os.path.join(output_dir, CURVE_JSON),
    "md": os.path.join(output_dir, CURVE_MD),
    "png": os.path.join(output_dir, CURVE_PNG),
  }
  _write_atomic(paths["json"], json.dumps(curve, indent=1))
  _write_atomic(paths["md"], curve_markdown(curve))
  import matplotlib

  matplotlib.use("Agg")  # files only: no display needed
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.5, 4))
  for name in sorted(curve["median_accuracy"]):
    points = [(s, curve["median_accuracy"][name].get(str(s))) for s in curve["steps"]]
    points = [(s, v) for s, v in points if v is not None]
    if points:
      ax.plot(*zip(*points), marker="o", label=name)
  ax.set_xlabel("checkpoint step")
  ax.set_ylabel("median accuracy (%)")
  ax.set_ylim(-2, 102)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  tmp = paths["png"] + f".tmp{os.getpid()}.png"
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, paths["png"])
  return paths


def _print_summary(results: dict) -> None:
  for name, d in results["datasets"].items():
    median = _median(d)
    stats = _stats(d)
    shown = "-" if median is None else f"{median:.1f}"
    print(f"{name:<32} median {shown:>6} over {stats.get('num_prompts', 0)} prompt(s)")
  files = results.get("files", {})
  if files:
    print(f"{_PROG}: wrote {', '.join(sorted(files.values()))}")


if __name__ == "__main__":
  sys.exit(main())
