"""`t0jax infer`: T5X's infer over a SeqIO task or mixture.

  t0jax infer --gin_file=F --mixture_or_task NAME --checkpoint PATH --output_dir DIR
              [--mode predict|score]

Writes `{task}-{mode}.jsonl-00000-of-00001` per task into DIR, as T5X does (one JSON line per
example: the example's `*_pretokenized` features as `inputs`, then `prediction` or `score`);
`t0jax.evaluate.infer` says what each field holds. gin/runs/infer.gin is read first; T5X's
--gin.CHECKPOINT_PATH, MIXTURE_OR_TASK_NAME and INFER_OUTPUT_DIR work in place of the flags.
"""

import logging
import os
import sys
from typing import Mapping, Optional

import gin

from t0jax.cli import common

_PROG = "t0jax infer"
DEFAULT_GIN = "gin/runs/infer.gin"
log = logging.getLogger("t0jax.infer")


@gin.configurable(module="t0jax")
def infer_checkpoint(
  *,
  checkpoint_path: str = gin.REQUIRED,
  mixture_or_task_name: str = gin.REQUIRED,
  output_dir: str = gin.REQUIRED,
  mode: str = "predict",
  split: str = "validation",
  task_feature_lengths: Optional[Mapping[str, int]] = None,
  batch_size: int = 32,
  max_examples: Optional[int] = None,
  use_cached_tasks: bool = False,
  num_partitions: int = 1,
  axis_rules="standard",
  dtype: Optional[str] = None,
  max_decode_length: int = 64,
  num_beams: int = 1,
  length_penalty: float = 0.6,
  vocab: Optional[str] = None,
) -> dict:
  """Load the checkpoint, run `mode` over every task of the mixture; {task: file written}."""
  from t0jax import checkpoints
  from t0jax.data import settings as data_settings
  from t0jax.evaluate import resolve_tasks
  from t0jax.evaluate import infer as infer_lib
  from t0jax.model import Transformer, logical_axes
  from t0jax.parallel.partitioning import Partitioner

  if mode not in infer_lib.MODES:
    raise common.UsageError(f"--mode {mode!r}: choose one of {', '.join(infer_lib.MODES)}.")
  if batch_size < 1:
    raise common.UsageError(f"BATCH_SIZE={batch_size}: give at least 1.")
  data_settings.configure()  # gin bindings such as t0jax.data.data_dir
  info = checkpoints.read_config(checkpoint_path)
  if vocab:
    if not os.path.isfile(vocab):
      raise common.UsageError(f"--vocab {vocab} does not exist.")
    data_settings.set_vocab(vocab)
  elif info.vocabulary and data_settings.vocab_path() == data_settings.DEFAULT_VOCAB:
    data_settings.set_vocab(info.vocabulary)  # the checkpoint's own, for catalogue tasks
  tasks = resolve_tasks(mixture_or_task_name)  # unknown names fail here, before any weight
  partitioner = Partitioner(num_partitions, axis_rules)
  cfg, params, info = checkpoints.load(
    checkpoint_path,
    shardings=lambda c: partitioner.shardings(logical_axes(c)),
    dtype=dtype,
    info=info,
  )
  return infer_lib.infer(
    Transformer(cfg),
    params,
    cfg,
    tasks,
    output_dir,
    mode=mode,
    split=split,
    batch_size=batch_size,
    task_feature_lengths=task_feature_lengths,
    max_examples=max_examples,
    use_cached=use_cached_tasks,
    partitioner=partitioner,
    max_decode_length=max_decode_length,
    num_beams=num_beams,
    length_penalty=length_penalty,
  )


def _parser():
  p = common.parser(
    "infer",
    "T5X's infer: predictions or scores of every example of a SeqIO task or mixture, "
    "in T5X's {task}-{mode}.jsonl-00000-of-00001 files. gin: " + DEFAULT_GIN + " is read "
    "first; --gin_file and --gin.NAME=VALUE override it.",
    gin=True,
    data=True,
    multihost=True,
  )
  p.add_argument(
    "--checkpoint",
    metavar="PATH",
    help="t0jax checkpoint (MODEL_DIR, checkpoints/ or a step dir) or HF T5 dir",
  )
  p.add_argument("--mixture_or_task", "--mixture", metavar="NAME", help="SeqIO task or mixture")
  p.add_argument("--output_dir", metavar="DIR", help="where the .jsonl files go")
  p.add_argument(
    "--mode",
    choices=("predict", "score"),
    help="predict (default): decode, or rank answer choices; score: log-likelihood of the targets",
  )
  p.add_argument("--max_examples", type=int, metavar="N", help="first N examples of each task")
  p.add_argument("--vocab", metavar="PATH", help="sentencepiece model for catalogue tasks")
  return p


def _bindings(args) -> list:
  return common.macro_bindings(
    args,
    (
      ("--checkpoint", "CHECKPOINT_PATH"),
      ("--mixture_or_task", "MIXTURE_OR_TASK_NAME"),
      ("--output_dir", "INFER_OUTPUT_DIR"),
      ("--mode", "INFER_MODE"),
      ("--max_examples", "MAX_EXAMPLES"),
      ("--vocab", "VOCAB"),
    ),
  )


def _check_required() -> None:
  for name, flag in (
    ("CHECKPOINT_PATH", "--checkpoint"),
    ("MIXTURE_OR_TASK_NAME", "--mixture_or_task"),
    ("INFER_OUTPUT_DIR", "--output_dir"),
  ):
    if gin.query_parameter(f"{name}/macro.value") is gin.REQUIRED:
      raise common.UsageError(f"{flag} is required (or --gin.{name}=...).")


def _body(ctx: common.Context) -> int:
  common.import_tensorflow()
  import t0jax.catalog  # noqa: F401 - registers the catalogue's tasks before gin locks

  ctx.parse_gin([DEFAULT_GIN], _bindings(ctx.args))
  _check_required()
  written = infer_checkpoint()
  if ctx.primary:
    for task, path in written.items():
      print(f"{task:<40} {path}")
    print(f"{_PROG}: wrote {len(written)} file(s).")
  return 0


def main(argv=None) -> int:
  from t0jax.checkpoints import CheckpointError
  from t0jax.evaluate import EvalDataError

  return common.run(
    "infer",
    argv,
    _parser,
    _body,
    gin=True,
    multihost=True,
    bad_input=(EvalDataError, CheckpointError),
  )


if __name__ == "__main__":
  sys.exit(main())
