"""Train the demo family's sentencepiece vocabulary (tasks/demo/spiece.model), deterministically.

    python -m t0jax.catalog.demo.build_vocab [--out PATH] [--check]

The model is an 896-piece (7 x 128) unigram vocabulary with T5's special ids (pad 0, eos 1, unk 2, no
bos), trained on every demo prompt rendered over the demo data plus the printable ASCII
characters (so text from outside the demo, such as catalogue fixtures, tokenizes without
unknowns). The demo text is too uniform for more pieces (sentencepiece caps it near 940).
The same inputs give the same bytes: one thread, no sentence sampling or shuffling.
`--check` rebuilds into a temporary file and fails if it differs from the shipped model.
"""

import argparse
import glob
import os
import string
import sys
import tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(HERE, "spiece.model")
VOCAB_SIZE = 896


def corpus_lines() -> list:
  from t0jax.prompts import apply_or_skip, load_templates_file
  from . import families

  lines = [" ".join(string.printable.split()), string.ascii_letters, string.digits]
  for path in sorted(glob.glob(os.path.join(HERE, "prompts", "*", "templates.yaml"))):
    loaded = load_templates_file(path)
    family = loaded.dataset[len("demo_") :]
    for split in sorted(families.SIZES[family]):
      for example in families.generate(family, split):
        for template in loaded.templates.values():
          rendered, _ = apply_or_skip(template, example)
          if rendered is None:
            continue
          lines += rendered.input.split("\n") + [rendered.target]
          lines += rendered.choices or []
  return [line for line in lines if line.strip()]


def build(out_path: str) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    text = os.path.join(tmp, "corpus.txt")
    with open(text, "w", encoding="utf-8") as f:
      f.write("\n".join(corpus_lines()) + "\n")
    spm.SentencePieceTrainer.train(
      input=text,
      model_prefix=os.path.join(tmp, "spiece"),
      model_type="unigram",
      vocab_size=VOCAB_SIZE,
      pad_id=0,
      eos_id=1,
      unk_id=2,
      bos_id=-1,
      character_coverage=1.0,
      num_threads=1,
      input_sentence_size=0,
      shuffle_input_sentence=False,
      max_sentence_length=1 << 16,
      minloglevel=2,
    )
    model = sp_pb2.ModelProto()
    with open(os.path.join(tmp, "spiece.model"), "rb") as src:
      model.ParseFromString(src.read())
  # The trainer records its (temporary) input and output paths; drop them so builds compare equal.
  model.trainer_spec.ClearField("input")
  model.trainer_spec.ClearField("model_prefix")
  with open(out_path, "wb") as dst:
    dst.write(model.SerializeToString(deterministic=True))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=SHIPPED)
  parser.add_argument("--check", action="store_true")
  args = parser.parse_args(argv)
  if not args.check:
    build(args.out)
    print(f"wrote {args.out}")
    return 0
  with tempfile.TemporaryDirectory() as tmp:
    fresh = os.path.join(tmp, "spiece.model")
    build(fresh)
    same = open(fresh, "rb").read() == open(SHIPPED, "rb").read()
  print(
    "the shipped demo vocabulary is up to date"
    if same
    else f"{SHIPPED} differs from a fresh build: run `python -m t0jax.catalog.demo.build_vocab`"
  )
  return 0 if same else 1


if __name__ == "__main__":
  sys.exit(main())
