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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from t0jax.cli import common

_SEPARATOR = "|||"
_RESERVED = ("scores", "prediction", "output")


class UsageError(Exception):
  """Bad flags or input; the message names the culprit."""


def _parser() -> argparse.ArgumentParser:
  p = common.parser(
    "predict",
    verbose=False,
    description="Score answer choices by summed log-likelihood (choice tokens + "
    "EOS, input without EOS), best first; or generate greedily when no choices are given.",
    gin=True,
  )
  p.add_argument(
    "--checkpoint",
    required=True,
    metavar="PATH",
    help="any checkpoint t0jax reads: a Hugging Face T5 directory (safetensors, "
    "pytorch_model.bin, flax_model.msgpack), a t0jax checkpoint (MODEL_DIR, its checkpoints/ "
    "folder, or one step folder), or a T5X checkpoint (T5Config fields its shapes cannot tell "
    "come from gin, e.g. --gin.T5Config.relative_attention_max_distance=256)",
  )
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--input", metavar="TEXT", help="one input text")
  src.add_argument(
    "--input_file",
    metavar="F.jsonl",
    help='one {"input": ..., "choices": [...]} object per line; prints one JSON '
    "line per example, in order (choices optional per line)",
  )
  p.add_argument(
    "--choices", metavar='"A|||B|||C"', help="answer choices for --input, split on |||"
  )
  p.add_argument("--json", action="store_true", help="print JSON instead of a ranked list")
  p.add_argument("--vocab", metavar="PATH", help="sentencepiece model (default: DIR/spiece.model)")
  p.add_argument(
    "--batch_size",
    type=int,
    default=16,
    help="inputs encoded, and choices decoded, per step (default 16)",
  )
  p.add_argument(
    "--max_decode_length",
    type=int,
    default=64,
    help="generation: most tokens generated per input (default 64)",
  )
  p.add_argument(
    "--dtype",
    choices=("float32", "bfloat16"),
    default="float32",
    help="activation dtype; parameters stay float32 (default float32)",
  )
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
    raise UsageError(
      f"--choices {text!r}: choice {empty[0]} is empty; separate non-empty choices "
      f"with {_SEPARATOR}."
    )
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


def _score(model, params, examples, inputs, vocab, batch_size: int) -> list:
  """Summed choice log-probabilities per example, by the evaluator's scorer."""
  from t0jax.evaluate.scorer import ChoiceScorer, check_examples

  choices = [[vocab.encode(c) + [vocab.eos_id] for c in e.choices] for e in examples]
  try:
    check_examples(inputs, choices, model.config.vocab_size)
  except ValueError as e:
    raise UsageError(str(e)) from None
  return ChoiceScorer(model, params, batch_size=batch_size).score(inputs, choices)[0]


def _generate(model, params, vocab, inputs: list, batch_size: int, max_length: int) -> list:
  """Greedy generation by the evaluator's generator; decoded texts in input order."""
  from t0jax.evaluate.generate import Generator

  outputs = Generator(model, params, batch_size=batch_size).generate(inputs, max_length)
  return [vocab.decode(tokens) for tokens in outputs]


def _run(ctx: common.Context) -> None:
  args = ctx.args
  if args.batch_size < 1:
    raise UsageError(f"--batch_size must be at least 1, got {args.batch_size}.")
  if args.max_decode_length < 1:
    raise UsageError(f"--max_decode_length must be at least 1, got {args.max_decode_length}.")
  examples = _read_examples(args)
  ctx.parse_gin_if_given()  # T5Config overrides for a T5X checkpoint
  from t0jax import checkpoints
  from t0jax.data.vocab import find_vocabulary

  info = checkpoints.read_config(args.checkpoint)  # a bad path fails before anything is read
  vocab = find_vocabulary(args.checkpoint, args.vocab)
  inputs = [vocab.encode(e.input) for e in examples]
  empty = [i for i, tokens in enumerate(inputs) if not tokens]
  if empty:
    raise UsageError(f"Example {empty[0] + 1}: the input encodes to no tokens; give some text.")
  if vocab.piece_count > info.cfg.vocab_size:
    raise UsageError(
      f"Vocabulary {vocab.path} has {vocab.piece_count} pieces but the checkpoint's "
      f"embedding has {info.cfg.vocab_size} rows; use the vocabulary the checkpoint "
      "was trained with."
    )
  cfg, params, _ = checkpoints.load(args.checkpoint, dtype=args.dtype, info=info)

  from t0jax.model import EncoderDecoderModel

  model = EncoderDecoderModel.from_config(cfg)
  ranked = [i for i, e in enumerate(examples) if e.choices is not None]
  generate = [i for i, e in enumerate(examples) if e.choices is None]
  results = {}
  if ranked:
    scores = _score(
      model,
      params,
      [examples[i] for i in ranked],
      [inputs[i] for i in ranked],
      vocab,
      args.batch_size,
    )
    results.update(zip(ranked, scores))
  if generate:
    texts = _generate(
      model, params, vocab, [inputs[i] for i in generate], args.batch_size, args.max_decode_length
    )
    results.update(zip(generate, texts))
  as_json = args.json or args.input_file is not None
  for i, example in enumerate(examples):
    _print(example, results[i], as_json)


def _print(example: Example, result, as_json: bool) -> None:
  if example.choices is None:
    if as_json:
      print(
        json.dumps({**example.extra, "input": example.input, "output": result}, ensure_ascii=False),
        flush=True,
      )
    else:
      print(result, flush=True)
    return
  best = int(result.argmax())
  if as_json:
    print(
      json.dumps(
        {
          **example.extra,
          "input": example.input,
          "choices": example.choices,
          "scores": [float(s) for s in result],
          "prediction": example.choices[best],
        },
        ensure_ascii=False,
      ),
      flush=True,
    )
    return
  for rank, j in enumerate(sorted(range(len(result)), key=lambda j: -result[j]), 1):
    print(f"{rank:>3}. {result[j]:12.4f}  {example.choices[j]}", flush=True)


def main(argv=None) -> int:
  from t0jax.checkpoints.hf import CheckpointError
  from t0jax.data.vocab import VocabularyError

  return common.run(
    "predict",
    argv,
    _parser,
    _run,
    gin=True,
    bad_input=(UsageError, CheckpointError, VocabularyError),
  )


if __name__ == "__main__":
  sys.exit(main())
