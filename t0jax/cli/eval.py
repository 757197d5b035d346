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

from t0jax.parallel import distributed
from t0jax.cli import gin_flags as gin_utils

_PROG = "t0jax eval"
DEFAULT_GIN = "gin/runs/eval.gin"
log = logging.getLogger("t0jax.eval")


class EvalUsageError(ValueError):
  """A flag or checkpoint that cannot be used; the message names it."""


def _checkpoint_vocabulary(path: str) -> Optional[str]:
  """The spiece.model kept beside a checkpoint (HF directory, or MODEL_DIR for t0jax runs)."""
  here = os.path.abspath(path)
  for _ in range(3):  # step dir -> checkpoints/ -> MODEL_DIR
    candidate = os.path.join(here, "spiece.model")
    if os.path.isfile(candidate):
      return candidate
    here = os.path.dirname(here)
  return None


def read_model_config(path: str):
  """(cfg, format, step) of a checkpoint, from its config alone (no arrays are read), so a bad
  path or a vocabulary mismatch fails before the weights are loaded."""
  import json
  from t0jax.checkpoints import orbax as checkpointing
  from t0jax.checkpoints import hf
  if not os.path.isdir(path):
    raise EvalUsageError(f"--checkpoint {path} does not exist (or is not a directory).")
  config_file = os.path.join(path, hf.CONFIG_FILE)
  if os.path.isfile(config_file):
    try:
      with open(config_file) as f:
        return hf.config_from_hf(json.load(f), config_file), "hf", 0
    except ValueError as e:
      if isinstance(e, hf.CheckpointError):
        raise
      raise EvalUsageError(f"{config_file} is not valid JSON: {e}") from e
  try:
    ckpt_dir, step = checkpointing.checkpoint_location(path)
  except FileNotFoundError:
    raise EvalUsageError(
        f"--checkpoint {path}: not a checkpoint t0jax can read; expected a Hugging Face T5 "
        f"directory ({hf.CONFIG_FILE} + {hf.WEIGHTS_FILE}) or a t0jax training checkpoint (a "
        "MODEL_DIR, its checkpoints/ folder, or one step folder).") from None
  from t0jax.model import T5Config
  ckpt = checkpointing.Checkpointer(ckpt_dir, keep=None, async_save=False)
  try:
    _, config = ckpt.read_meta(step)
  finally:
    ckpt.close()
  full = dict(config["model_full"])
  full["mlp_activations"] = tuple(full["mlp_activations"])
  return T5Config(**full), "t0jax", step


def load_params(path: str, checkpoint_format: str, cfg, partitioner):
  """(cfg, parameters placed on the partitioner's mesh by their logical axes). An HF import may
  refine the config (how its output head is tied); the activation dtype of `cfg` is kept."""
  import jax
  import numpy as np
  from t0jax.checkpoints import orbax as checkpointing
  from t0jax.checkpoints import hf
  from t0jax.model import logical_axes
  if checkpoint_format == "hf":
    imported, params = hf.load_hf_checkpoint(path)
    cfg = imported.replace(dtype=cfg.dtype)
    shardings = partitioner.shardings(logical_axes(cfg))
    return cfg, jax.tree.map(lambda x, s: jax.device_put(np.asarray(x, np.float32), s), params,
                             shardings)
  return cfg, checkpointing.load_params(path, partitioner.shardings(logical_axes(cfg)))[1]


@gin.configurable(module="t0jax")
def evaluate_checkpoint(*, checkpoint_path: str = gin.REQUIRED,
                        mixture_or_task_name: str = gin.REQUIRED, output_dir: str = gin.REQUIRED,
                        batch_size: int = 32, split: str = "validation",
                        task_feature_lengths: Optional[Mapping[str, int]] = None,
                        max_examples: Optional[int] = None, all_prompts: bool = True,
                        calibrate: bool = False, calibration_input: str = "N/A",
                        per_example: bool = False, num_partitions: int = 1,
                        axis_rules="standard", num_devices: Optional[int] = None,
                        dtype: Optional[str] = None, pack_choices: bool = True,
                        max_decode_length: int = 64, num_beams: int = 1,
                        length_penalty: float = 0.6, buckets_per_octave: int = 4,
                        vocab: Optional[str] = None, tensorboard: bool = True) -> dict:
  """Load the checkpoint, evaluate it, write the reports; returns the results dict."""
  import jax
  from t0jax.data import settings as data_settings
  from t0jax.evaluate import data as eval_data
  from t0jax.evaluate import evaluate, report, resolve_tasks
  from t0jax.model import Transformer
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
    kept = _checkpoint_vocabulary(checkpoint_path)
    if kept:
      log.info("Using the checkpoint's vocabulary %s for catalogue tasks.", kept)
      data_settings.set_vocab(kept)
  tasks = resolve_tasks(mixture_or_task_name, all_prompts)  # unknown names fail here
  cfg, checkpoint_format, step = read_model_config(checkpoint_path)
  for task in tasks:  # before the weights are read
    eval_data.check_vocabulary(task, cfg.vocab_size)
  if dtype:
    cfg = cfg.replace(dtype=dtype)
  devices = jax.devices()[:num_devices] if num_devices else None
  partitioner = Partitioner(num_partitions, axis_rules, devices=devices)
  cfg, params = load_params(checkpoint_path, checkpoint_format, cfg, partitioner)
  results = evaluate(Transformer(cfg), params, cfg, mixture_or_task_name, batch_size=batch_size,
                     split=split, task_feature_lengths=task_feature_lengths,
                     max_examples=max_examples, calibrate=calibrate,
                     calibration_input=calibration_input, all_prompts=all_prompts,
                     per_example=per_example, partitioner=partitioner,
                     pack_choices=pack_choices, max_decode_length=max_decode_length,
                     num_beams=num_beams, length_penalty=length_penalty,
                     buckets_per_octave=buckets_per_octave)
  results["checkpoint"] = {"path": os.path.abspath(checkpoint_path), "step": step}
  if jax.process_index() == 0:
    results["files"] = report.write_all(results, output_dir, checkpoint=checkpoint_path,
                                        step=step or 0, tensorboard=tensorboard)
  return results


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog=_PROG, description="Zero-shot evaluation: every answer choice scored by summed "
      "log-likelihood (one encoder pass per input), accuracy per prompt, statistics per "
      f"dataset. gin: {DEFAULT_GIN} is read first; --gin_file=F and --gin.NAME=VALUE override.")
  p.add_argument("--checkpoint", required=True, metavar="PATH",
                 help="t0jax checkpoint (MODEL_DIR, checkpoints/ or a step dir) or HF T5 dir")
  p.add_argument("--mixture", required=True, metavar="NAME",
                 help="SeqIO mixture or task, e.g. t0_eval_score_eval, demo_eval_score_eval")
  p.add_argument("--output_dir", required=True, metavar="DIR", help="where the reports go")
  p.add_argument("--vocab", metavar="PATH", help="sentencepiece model for catalogue tasks "
                 "(default: T0JAX_VOCAB, else the checkpoint's spiece.model)")
  p.add_argument("--max_examples", type=int, metavar="N", help="first N examples of each task")
  p.add_argument("--batch_size", type=int, metavar="N", help="inputs encoded per step")
  p.add_argument("--per_example", action="store_true", help="scores of every example in JSON")
  p.add_argument("--calibrate", action="store_true",
                 help="also report accuracy calibrated by the choice's unconditional likelihood")
  p.add_argument("--verbose", action="store_true")
  distributed.add_flags(p)
  return p


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  gin_files, gin_flags, rest = gin_utils.split_gin_args(argv)
  try:
    args = _parser().parse_args(rest)
  except SystemExit as exit_:  # --help (0) or bad usage (2)
    return int(exit_.code or 0)
  try:
    group = distributed.initialize_from_args(args)
  except distributed.DistributedError as e:
    print(f"{_PROG}: {e}", file=sys.stderr)
    return 2
  prefix = f"[process {group.process_id}] " if group.is_multiprocess else ""
  logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                      format=f"{prefix}%(levelname)s %(name)s: %(message)s")
  flags = [f"CHECKPOINT_PATH={args.checkpoint!r}", f"MIXTURE_OR_TASK_NAME={args.mixture!r}",
           f"EVAL_OUTPUT_DIR={args.output_dir!r}"]
  for name, value in (("MAX_EXAMPLES", args.max_examples), ("EVAL_BATCH_SIZE", args.batch_size),
                      ("VOCAB", args.vocab)):
    if value is not None:
      flags.append(f"{name}={value!r}")
  if args.per_example:
    flags.append("PER_EXAMPLE=True")
  if args.calibrate:
    flags.append("CALIBRATE=True")
  # Registers the catalogue's tasks before gin locks its configuration.
  import t0jax.catalog  # noqa: F401
  from t0jax.checkpoints.hf import CheckpointError
  from t0jax.evaluate import EvalDataError
  try:
    gin.clear_config()  # the command owns gin's configuration (main may run twice in a process)
    gin_utils.parse([DEFAULT_GIN] + gin_files, flags + gin_flags)
    results = evaluate_checkpoint()
  except (gin_utils.GinConfigError, EvalUsageError, EvalDataError, CheckpointError,
          distributed.DistributedError, KeyError, FileNotFoundError, ValueError) as e:
    message = getattr(e, "message", None) or str(e)
    print(f"{_PROG}: {prefix}{message}", file=sys.stderr)
    return distributed.finish(group, 2)
  if group.process_id == 0:
    _print_summary(results)
  # Passes JAX's shutdown barrier now: left to interpreter exit, a multi-process evaluation
  # waits about a minute there for peers that have already gone.
  return distributed.finish(group, 0)


def _print_summary(results: dict) -> None:
  for name, d in results["datasets"].items():
    stats = d["original_task"].get("accuracy") or next(
        (v for v in d["original_task"].values() if isinstance(v, dict) and "median" in v), {})
    median = stats.get("median")
    shown = "-" if median is None or median != median else f"{median:.1f}"
    print(f"{name:<32} median {shown:>6} over {stats.get('num_prompts', 0)} prompt(s)")
  files = results.get("files", {})
  if files:
    print(f"{_PROG}: wrote {', '.join(sorted(files.values()))}")


if __name__ == "__main__":
  sys.exit(main())
