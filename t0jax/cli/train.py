"""`t0jax train` (also `python -m t0jax.train`): fine-tune a T5 on a SeqIO mixture, configured by
gin files as T5X users expect (T5X's flags and run macros; docs/t5x.md). The loop itself is
`t0jax.train.trainer.train`."""

import sys

from t0jax.cli import common


def _parser():
  p = common.parser(
    "train",
    "Fine-tune a T5 on a SeqIO mixture (gin-configured, T5X's flags and macros).",
    gin=True,
    data=True,
    multihost=True,
  )
  p.add_argument("--model_dir", help="where checkpoints and metrics go (gin MODEL_DIR)")
  return p


def _body(ctx: common.Context) -> int:
  args = ctx.args
  bindings = [("--model_dir", f"MODEL_DIR={args.model_dir!r}")] if args.model_dir else []
  # Everything that registers gin configurables or seqio tasks is imported before gin locks.
  common.import_tensorflow()
  from t0jax.train import trainer
  import t0jax.catalog  # noqa: F401

  ctx.parse_gin(bindings=bindings, require_file=True)
  result = trainer.train()
  if ctx.primary and result["preempted"]:
    print(
      f"t0jax train: stopped by {result['preempted']} at step {result['step']}; the "
      "checkpoint is saved and the same command resumes.",
      file=sys.stderr,
    )
  elif ctx.primary:
    print(f"t0jax train: done at step {result['step']}.")
  return 0


def main(argv=None) -> int:
  return common.run(
    "train", argv, _parser, _body, gin=True, multihost=True, bad_input=(RuntimeError,)
  )


if __name__ == "__main__":
  sys.exit(main())
