"""`t0jax train` (also `python -m t0jax.train`): fine-tune a T5 on a SeqIO mixture, configured by
gin files as T5X users expect. The loop itself is `t0jax.train.trainer.train`."""
import argparse
import logging
import sys

from t0jax.parallel import distributed
from t0jax.cli import gin_flags as gin_utils


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  gin_files, gin_flags, rest = gin_utils.split_gin_args(argv)
  parser = argparse.ArgumentParser(
      prog="t0jax train", description="Fine-tune a T5 on a SeqIO mixture (gin-configured). "
      "Flags: --gin_file=FILE (repeatable), --gin.NAME=VALUE (repeatable), --model_dir=DIR.")
  parser.add_argument("--model_dir", help="where checkpoints and metrics go (gin MODEL_DIR)")
  parser.add_argument("--verbose", action="store_true")
  distributed.add_flags(parser)
  args = parser.parse_args(rest)
  if not gin_files:
    parser.error("at least one --gin_file is required (e.g. --gin_file=gin/experiments/demo.gin)")
  # Before anything touches a device: JAX fixes its device list at the first use.
  try:
    group = distributed.initialize_from_args(args)
  except distributed.DistributedError as e:
    print(f"t0jax train: {e}", file=sys.stderr)
    return 2
  primary = group.process_id == 0
  # Only process 0 logs below errors; the others would repeat every line.
  level = logging.INFO if args.verbose else logging.WARNING
  prefix = f"[process {group.process_id}] " if group.is_multiprocess else ""
  logging.basicConfig(level=level if primary else logging.ERROR,
                      format=f"{prefix}%(levelname)s %(name)s: %(message)s")
  if args.model_dir:
    gin_flags.append(f"MODEL_DIR={args.model_dir!r}")
  # Everything that registers gin configurables or seqio tasks is imported before gin locks.
  from t0jax.train import trainer
  import t0jax.catalog  # noqa: F401
  try:
    gin_utils.parse(gin_files, gin_flags)
    result = trainer.train()
  except (gin_utils.GinConfigError, PermissionError, ValueError, FileNotFoundError,
          RuntimeError) as e:
    print(f"t0jax train: {prefix}{e}", file=sys.stderr)
    return distributed.finish(group, 2)
  if primary and result["preempted"]:
    print(f"t0jax train: stopped by {result['preempted']} at step {result['step']}; the "
          "checkpoint is saved and the same command resumes.", file=sys.stderr)
  elif primary:
    print(f"t0jax train: done at step {result['step']}.")
  return distributed.finish(group, 0)


if __name__ == "__main__":
  sys.exit(main())
