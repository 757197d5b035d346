"""The T5 sentencepiece vocabulary for commands that must not import TensorFlow.

seqio's SentencePieceVocabulary imports TensorFlow; `t0jax predict` needs only encode and decode,
so it wraps sentencepiece directly, with T5's conventions: pad 0, EOS 1, and `extra_ids` sentinel
ids placed after the sentencepiece pieces, `<extra_id_0>` being the highest.
"""
from pathlib import Path
from typing import Iterable, Optional

import sentencepiece as spm

PAD_ID = 0
EOS_ID = 1
VOCAB_FILE = "spiece.model"


class VocabularyError(ValueError):
  """A vocabulary that cannot be found or does not follow T5's conventions."""


class Vocabulary:
  """Encodes raw text to ids exactly as sentencepiece does, decodes ids back to text."""
  pad_id = PAD_ID
  eos_id = EOS_ID

  def __init__(self, path, extra_ids: int = 100):
    self.path = Path(path)
    if not self.path.is_file():
      raise VocabularyError(f"Vocabulary {self.path} does not exist.")
    self._sp = spm.SentencePieceProcessor()
    try:
      self._sp.Load(str(self.path))
    except (OSError, RuntimeError) as e:
      raise VocabularyError(f"{self.path} is not a sentencepiece model: {e}") from e
    if self._sp.pad_id() != PAD_ID or self._sp.eos_id() != EOS_ID:
      raise VocabularyError(
          f"{self.path}: pad id {self._sp.pad_id()}, EOS id {self._sp.eos_id()}; T5 checkpoints "
          f"need pad {PAD_ID} and EOS {EOS_ID}. Use the sentencepiece model of the checkpoint.")
    self.extra_ids = extra_ids

  @property
  def piece_count(self) -> int:
    """Ids sentencepiece itself can produce (encode never returns sentinels)."""
    return self._sp.GetPieceSize()

  @property
  def vocab_size(self) -> int:
    return self.piece_count + self.extra_ids

  def encode(self, text: str) -> list:
    return list(self._sp.EncodeAsIds(text))

  def decode(self, ids: Iterable[int]) -> str:
    """Text of ids up to the first EOS; pad dropped, sentinels written `<extra_id_N>`, and ids
    past the vocabulary (embedding rows padded up to a multiple of 128) dropped."""
    parts, run = [], []
    for i in (int(i) for i in ids):
      if i == EOS_ID:
        break
      if i == PAD_ID or i >= self.vocab_size:
        continue
      if i >= self.piece_count:
        parts.append(self._sp.DecodeIds(run))
        parts.append(f"<extra_id_{self.vocab_size - 1 - i}>")
        run = []
      else:
        run.append(i)
    parts.append(self._sp.DecodeIds(run))
    return "".join(parts)


def find_vocabulary(checkpoint_dir, vocab_path: Optional[str] = None) -> Vocabulary:
  """`vocab_path` if given, else the checkpoint's own spiece.model; a clear error if neither."""
  if vocab_path is not None:
    if not Path(vocab_path).is_file():
      raise VocabularyError(f"--vocab {vocab_path} does not exist.")
    return Vocabulary(vocab_path)
  candidate = Path(checkpoint_dir) / VOCAB_FILE
  # A t0jax training checkpoint keeps the vocabulary in its MODEL_DIR, above the step folders.
  for folder in [Path(checkpoint_dir), *Path(checkpoint_dir).resolve().parents[:3]]:
    if (folder / VOCAB_FILE).is_file():
      return Vocabulary(folder / VOCAB_FILE)
  raise VocabularyError(
      f"No vocabulary: {candidate} does not exist and --vocab was not given. Pass --vocab with "
      "the checkpoint's sentencepiece model (spiece.model, e.g. from the Hugging Face repository "
      "the checkpoint came from).")
