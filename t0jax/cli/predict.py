"""`t0jax predict`: rank answer choices (or generate) with a checkpoint, as T0 is evaluated.

  t0jax predict --checkpoint DIR --input TEXT --choices "yes|||no"   # ranked, best first
  t0jax predict --checkpoint DIR --input TEXT                        # greedy generation
  t0jax predict --checkpoint DIR --input_file examples.jsonl         # one JSON line per example

A choice scores the summed log-probability of its tokens plus EOS; the input is encoded without
EOS, as T0 was trained. In a JSONL file, an example without "choices" (key absent or null) is
generated for; an empty choices list is an error. Never imports TensorFlow.
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

_PROG = "t0jax predict"
_SEPARATOR = "|||"
_RESERVED = ("scores", "prediction", "output")


class UsageError(Exception):
  """Bad flags or input; the message names the culprit."""


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog=_PROG, description="Score answer choices by summed log-likelihood (choice tokens + "
      "EOS, input without EOS), best first; or generate greedily when no choices are given.")
  p.add_argument("--checkpoint", required=True, metavar="DIR",
                 help="a Hugging Face T5 checkpoint directory (config.json + *.safetensors)")
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--input", metavar="TEXT", help="one input text")
  src.add_argument("--input_file", metavar="F.jsonl",
                   help='one {"input": ..., "choices": [...]} object per line; prints one JSON '
                        "line per example, in order (choices optional per line)")
  p.add_argument("--choices", metavar='"A|||B|||C"', help="answer choices for --input, split on |||")
  p.add_argument("--json", action="store_true", help="print JSON instead of a ranked list")
  p.add_argument("--vocab", metavar="PATH", help="sentencepiece model (default: DIR/spiece.model)")
  p.add_argument("--batch_size", type=int, default=16,
                 help="inputs encoded, and choices decoded, per step (default 16)")
  p.add_argument("--max_decode_length", type=int, default=64,
                 help="generation: most tokens generated per input (default 64)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="activation dtype; parameters stay float32 (default float32)")
  return p


@dataclass
class Example:
  input: str
  choices: Optional[list]  # None: generate
  extra: dict  # other JSONL fields, passed through to the output


def _split_choices(text: str) -> list:
  choices = [c.strip() for c in text.split(_SEPARATOR)]
  empty = [i + 1 for i, c in enumerate(choices) if not c]
  if empty:
    raise UsageError(f"--choices {text!r}: choice {empty[0]} is empty; separate non-empty choices "
                     f"with {_SEPARATOR}.")
  return choices


def _parse_line(line: str, where: str) -> Example:
  try:
    obj = json.loads(line)
  except json.JSONDecodeError as e:
    raise UsageError(f"{where}: not valid JSON ({e}).") from None
  if not isinstance(obj, dict):
    raise UsageError(f"{where}: expected a JSON object, got {type(obj).__name__}.")
  text, choices = obj.pop("input", None), obj.pop("choices", None)
  if not isinstance(text, str):
    raise UsageError(f'{where}: needs "input", a string; got {type(text).__name__}.')
  if choices is not None:
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
      raise UsageError(f'{where}: "choices" must be a list of strings.')
    if not choices:
      raise UsageError(f'{where}: "choices" is empty; omit the key (or use null) to generate.')
  clash = [k for k in _RESERVED if k in obj]
  if clash:
    raise UsageError(f"{where}: field {clash[0]!r} is written by predict; rename it.")
  return Example(text, choices, obj)


def _read_examples(args) -> list:
  if args.input is not None:
    choices = _split_choices(args.choices) if args.choices is not None else None
    return [Example(args.input, choices, {})]
  if args.choices is not None:
    raise UsageError("--choices goes with --input; in --input_file put choices on each line.")
  path = Path(args.input_file)
  if not path.is_file():
    raise UsageError(f"--input_file {path} does not exist.")
  examples = []
  try:
    with path.open(encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        if line.strip():
          examples.append(_parse_line(line, f"{path}:{number}"))
  except UnicodeDecodeError as e:
    raise UsageError(f"--input_file {path}: not UTF-8 text ({e}).") from None
  if not examples:
    raise UsageError(f"--input_file {path} holds no examples.")
  return examples


def load_checkpoint(directory):
  """(T5Config, params) from a checkpoint directory, whatever its format."""
  from t0jax.checkpoints import hf
  path = Path(directory)
  if not path.is_dir():
    raise UsageError(f"--checkpoint {path} does not exist (or is not a directory).")
  # One branch per format, detected by its marker file; t0jax's own (Orbax) training
  # checkpoints become one more branch here.
  if (path / hf.CONFIG_FILE).exists():
    return hf.load_hf_checkpoint(path)
  from t0jax.checkpoints import orbax as checkpointing
  if checkpointing.is_checkpoint_dir(str(path)) or any(
      checkpointing.is_checkpoint_dir(str(p)) for p in path.iterdir() if p.name.isdigit()):
    return checkpointing.load_params(str(path))
  raise UsageError(f"--checkpoint {path}: not a checkpoint t0jax can read; expected a Hugging Face "
                   f"T5 directory ({hf.CONFIG_FILE} + {hf.WEIGHTS_FILE}) or a t0jax training "
                   "checkpoint (a MODEL_DIR, its checkpoints/ folder, or one step folder).")


def _generate(model, params, vocab, inputs: list, batch_size: int, max_length: int) -> list:
  """Greedy generation for token lists, batched by length; decoded texts in input order."""
  import numpy as np
  from t0jax.model.decoding import greedy_decode
  from t0jax.evaluate.scoring_legacy import bucket_length
  outputs = [None] * len(inputs)
  order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
  for start in range(0, len(order), batch_size):
    batch = order[start:start + batch_size]
    rows = min(bucket_length(len(batch), 1), batch_size)
    enc = np.zeros((rows, bucket_length(max(len(inputs[i]) for i in batch))), np.int32)
    for r, i in enumerate(batch):
      enc[r, :len(inputs[i])] = inputs[i]
    out = np.asarray(greedy_decode(model, params, enc, max_decode_length=max_length,
                                   eos_id=vocab.eos_id))
    for r, i in enumerate(batch):
      outputs[i] = vocab.decode(out[r])
  return outputs


def _run(args) -> None:
  if args.batch_size < 1:
    raise UsageError(f"--batch_size must be at least 1, got {args.batch_size}.")
  if args.max_decode_length < 1:
    raise UsageError(f"--max_decode_length must be at least 1, got {args.max_decode_length}.")
  examples = _read_examples(args)
  from t0jax.data.spm import find_vocabulary
  vocab = find_vocabulary(args.checkpoint, args.vocab)
  inputs = [vocab.encode(e.input) for e in examples]
  empty = [i for i, tokens in enumerate(inputs) if not tokens]
  if empty:
    raise UsageError(f"Example {empty[0] + 1}: the input encodes to no tokens; give some text.")
  cfg, params = load_checkpoint(args.checkpoint)
  if vocab.piece_count > cfg.vocab_size:
    raise UsageError(f"Vocabulary {vocab.path} has {vocab.piece_count} pieces but the checkpoint's "
                     f"embedding has {cfg.vocab_size} rows; use the vocabulary the checkpoint was "
                     "trained with.")

  import jax
  from t0jax.model import Transformer
  from t0jax.evaluate.scoring_legacy import score_choices
  cfg = cfg.replace(dtype=args.dtype)
  model = Transformer(cfg)
  params = jax.device_put(params)  # once, not a host-to-device copy per batch
  ranked = [i for i, e in enumerate(examples) if e.choices is not None]
  generate = [i for i, e in enumerate(examples) if e.choices is None]
  results = {}
  if ranked:
    choices = [[vocab.encode(c) + [vocab.eos_id] for c in examples[i].choices] for i in ranked]
    scores = score_choices(model, params, cfg, [inputs[i] for i in ranked], choices,
                           batch_size=args.batch_size)
    results.update(zip(ranked, scores))
  if generate:
    texts = _generate(model, params, vocab, [inputs[i] for i in generate], args.batch_size,
                      args.max_decode_length)
    results.update(zip(generate, texts))
  as_json = args.json or args.input_file is not None
  for i, example in enumerate(examples):
    _print(example, results[i], as_json)


def _print(example: Example, result, as_json: bool) -> None:
  if example.choices is None:
    if as_json:
      print(json.dumps({**example.extra, "input": example.input, "output": result},
                       ensure_ascii=False), flush=True)
    else:
      print(result, flush=True)
    return
  best = int(result.argmax())
  if as_json:
    print(json.dumps({**example.extra, "input": example.input, "choices": example.choices,
                      "scores": [float(s) for s in result],
                      "prediction": example.choices[best]}, ensure_ascii=False), flush=True)
    return
  for rank, j in enumerate(sorted(range(len(result)), key=lambda j: -result[j]), 1):
    print(f"{rank:>3}. {result[j]:12.4f}  {example.choices[j]}", flush=True)


def main(argv) -> int:
  try:
    args = _parser().parse_args(argv)
  except SystemExit as exit_:  # argparse exits on --help (0) and on bad usage (2)
    return int(exit_.code or 0)
  from t0jax.checkpoints.hf import CheckpointError
  from t0jax.data.spm import VocabularyError
  try:
    _run(args)
  except (UsageError, CheckpointError, VocabularyError) as error:
    print(f"{_PROG}: error: {error}", file=sys.stderr)
    return 2
  except BrokenPipeError:  # the reader (e.g. `| head`) stopped early: not an error of ours
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
