"""`t0jax convert SRC DST [--to hf|t0jax]`: any checkpoint t0jax reads, written as another.

  t0jax convert ckpts/T0 ckpts/T0-safetensors                  # pytorch_model.bin -> safetensors
  t0jax convert gs://.../checkpoint_1100000 out/lm100k --vocab spiece.model \\
      --gin.T5Config.relative_attention_max_distance=128         # T5X -> Hugging Face
  t0jax convert ckpts/T0_3B out/t0_3b-init --to t0jax           # -> INITIAL_CHECKPOINT_PATH

`--to hf` writes safetensors + config.json (+ spiece.model when known) that transformers loads;
tensors are read one at a time and written one output shard at a time (`--max_shard_size`), so
peak memory is one shard. `--to t0jax` writes a t0jax (Orbax) checkpoint, a MODEL_DIR with
`checkpoints/<step>/`, usable as INITIAL_CHECKPOINT_PATH; it holds the parameters in memory once.
Either output is written in a temporary folder beside DST and renamed into place at the end, so
an interrupted conversion leaves no DST; an existing non-empty DST is refused.
"""

import logging
import shutil
import sys
import tempfile

from etils import epath

from t0jax.cli import common

log = logging.getLogger(__name__)


def _parser():
  p = common.parser(
    "convert",
    "Convert a checkpoint (safetensors, pytorch_model.bin, "
    "flax_model.msgpack, T5X, t0jax) to a Hugging Face or t0jax checkpoint.",
    gin=True,
  )
  p.add_argument("src", metavar="SRC", help="checkpoint to read (any format t0jax reads)")
  p.add_argument("dst", metavar="DST", help="directory to create (must not exist, or be empty)")
  p.add_argument(
    "--to",
    choices=("hf", "t0jax"),
    default="hf",
    help="hf: safetensors + config.json (default); t0jax: Orbax MODEL_DIR",
  )
  p.add_argument(
    "--vocab",
    metavar="PATH",
    help="sentencepiece model to keep with DST (default: the one kept with SRC)",
  )
  p.add_argument(
    "--dtype",
    choices=("float32", "bfloat16"),
    default="float32",
    help="--to hf: dtype of the written tensors (default float32)",
  )
  p.add_argument(
    "--max_shard_size",
    default="2GB",
    help="--to hf: largest safetensors file, e.g. 2GB or 500MB (default 2GB)",
  )
  return p


def _check_destination(dst: epath.Path) -> None:
  if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
    raise common.UsageError(
      f"DST {dst} already exists and is not empty; choose a new directory (nothing was written)."
    )


def _vocabulary(args, info):
  if args.vocab is not None:
    if not epath.Path(args.vocab).is_file():
      raise common.UsageError(f"--vocab {args.vocab} does not exist.")
    return args.vocab
  if info.vocabulary is None:
    log.warning(
      "%s keeps no spiece.model and --vocab was not given: DST will have no vocabulary "
      "(pass --vocab to include one).",
      args.src,
    )
  return info.vocabulary


def _read(src: str, info):
  """(cfg, params) with params read on use where the format allows (see hf.Deferred)."""
  from t0jax import checkpoints

  module = checkpoints._module(info.format)
  if info.format == "orbax":  # Orbax restores whole trees
    return module.load_params(src, info.cfg, None, scan_layers=False)
  return module.load_params(src, info.cfg, None, lazy=True)


def _to_hf(args, info, vocab) -> None:
  from t0jax.checkpoints import hf

  cfg, params = _read(args.src, info)
  hf.save_hf_checkpoint(
    params, cfg, args.dst, dtype=args.dtype, max_shard_size=args.max_shard_size, vocab_path=vocab
  )


def _to_t0jax(args, info, vocab) -> None:
  import jax
  import numpy as np
  from t0jax.checkpoints import orbax

  cfg, params = _read(args.src, info)
  params = jax.tree.map(np.asarray, params)
  dst = epath.Path(args.dst)
  dst.parent.mkdir(parents=True, exist_ok=True)
  tmp = epath.Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=str(dst.parent)))
  try:
    ckpt = orbax.Checkpointer(str(tmp / "checkpoints"), keep=None, async_save=False)
    run_config = {
      "model": cfg.shape_signature(),
      "model_full": cfg.to_dict(),
      "converted_from": str(args.src),
      "source_format": info.format,
    }
    ckpt.save(info.step or 0, {"params": params}, {}, run_config, force=True)
    ckpt.close()
    if vocab is not None:
      shutil.copyfile(vocab, str(tmp / "spiece.model"))
    if dst.exists():
      dst.rmdir()  # empty: checked before anything was read
    tmp.rename(dst)
  except BaseException:
    shutil.rmtree(str(tmp), ignore_errors=True)
    raise


def _body(ctx: common.Context) -> int:
  args = ctx.args
  _check_destination(epath.Path(args.dst))
  ctx.parse_gin_if_given()  # T5Config overrides for a T5X checkpoint
  from t0jax import checkpoints

  info = checkpoints.read_config(args.src, flag="SRC")
  vocab = _vocabulary(args, info)
  (_to_hf if args.to == "hf" else _to_t0jax)(args, info, vocab)
  print(
    f"t0jax convert: wrote {args.dst} ({args.to}, from a {info.format} checkpoint"
    f"{f' at step {info.step}' if info.step is not None else ''}; vocabulary: "
    f"{vocab or 'none'})."
  )
  return 0


def main(argv=None) -> int:
  from t0jax.checkpoints.hf import CheckpointError

  return common.run("convert", argv, _parser, _body, gin=True, bad_input=(CheckpointError,))


if __name__ == "__main__":
  sys.exit(main())
