"""The T5 sentencepiece vocabulary: its ids, the TF-free `Vocabulary`, and seqio's for the tasks.

T5's conventions: pad 0, EOS 1, and `extra_ids` sentinel ids placed after the sentencepiece
pieces, `<extra_id_0>` being the highest. Two classes share them:

- `Vocabulary` wraps sentencepiece directly: encode and decode for `t0jax predict`, which must
  not import TensorFlow (seqio's vocabulary does). Importing this module imports neither.
- `DeferredVocabulary`, a `seqio.SentencePieceVocabulary` whose model file is chosen when first
  used, not when a task is built. Tasks are built at `import t0jax.catalog`; a plain seqio
  vocabulary would freeze the path at that moment (before a user or a gin file could set it), and
  loading it would touch its file (a `gs://` path for the T5 vocabulary). The class is created on
  first access of `t0jax.data.vocab.DeferredVocabulary`, which imports TensorFlow and seqio.

The vocabulary kept beside a checkpoint is found by one rule, `checkpoint_vocabulary`.
"""

import threading
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import sentencepiece as spm

from t0jax.data import settings

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
        f"need pad {PAD_ID} and EOS {EOS_ID}. Use the sentencepiece model of the checkpoint."
      )
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


def checkpoint_vocabulary(path) -> Optional[Path]:
  """The spiece.model kept with a checkpoint: in an HF directory, or in a t0jax MODEL_DIR, which
  `path` may name directly, through its checkpoints/ folder, or through one step folder. The
  search stops at MODEL_DIR, so a vocabulary of some enclosing folder is never picked up."""
  here = Path(path).absolute()
  for folder in (here, here.parent, here.parent.parent):  # step -> checkpoints/ -> MODEL_DIR
    if (folder / VOCAB_FILE).is_file():
      return folder / VOCAB_FILE
  return None


def find_vocabulary(checkpoint, vocab_path: Optional[str] = None) -> Vocabulary:
  """`vocab_path` if given, else the checkpoint's own spiece.model; a clear error if neither."""
  if vocab_path is not None:
    if not Path(vocab_path).is_file():
      raise VocabularyError(f"--vocab {vocab_path} does not exist.")
    return Vocabulary(vocab_path)
  kept = checkpoint_vocabulary(checkpoint)
  if kept is None:
    raise VocabularyError(
      f"No vocabulary: {Path(checkpoint) / VOCAB_FILE} does not exist (nor in a t0jax "
      "checkpoint's MODEL_DIR) and --vocab was not given. Pass --vocab with the checkpoint's sentencepiece model (spiece.model, e.g. "
      "from the Hugging Face repository the checkpoint came from)."
    )
  return Vocabulary(kept)


# ---- seqio's vocabulary for the tasks (TensorFlow, on first use) ----

_lock = threading.Lock()  # model loading
_build_lock = threading.Lock()


def _build_deferred_class():
  from t0jax.data.tf_setup import import_tensorflow

  import_tensorflow()  # before seqio loads it: quiet, no GPUs for TensorFlow
  import seqio

  class DeferredVocabulary(seqio.SentencePieceVocabulary):
    """A `seqio.SentencePieceVocabulary` whose model file (and extra ids) come from callables,
    asked again whenever the data settings changed since the model was loaded."""

    def __init__(
      self,
      path: Union[str, Callable[[], str]],
      extra_ids: Union[int, Callable[[], int]] = 0,
      label: str = "vocabulary",
    ):
      self._path_fn = path if callable(path) else (lambda: path)
      self._extra_ids_fn = extra_ids if callable(extra_ids) else (lambda: extra_ids)
      self._label = label
      self._loaded_version = None
      super().__init__(sentencepiece_model_file="", extra_ids=0)

    def _wanted(self) -> tuple:
      return self._path_fn(), int(self._extra_ids_fn())

    def resolved(self) -> tuple:
      """(model file, extra ids) as the settings say now; reads no file."""
      if self._model is not None and self._loaded_version == settings.version():
        return self._sentencepiece_model_file, self._extra_ids
      return self._wanted()

    def _model_context(self):
      with _lock:
        if self._model is not None and self._loaded_version != settings.version():
          # The settings changed (e.g. set_vocab): reload if they now name another model.
          if self._wanted() != (self._sentencepiece_model_file, self._extra_ids):
            self._model = None
          self._loaded_version = settings.version()
        if self._model is None:
          self._loaded_version = settings.version()
          self._sentencepiece_model_file, self._extra_ids = self._wanted()
          try:
            return super()._model_context()
          except Exception as e:
            raise OSError(
              f"cannot load the {self._label} sentencepiece model "
              f"{self._sentencepiece_model_file!r} ({type(e).__name__}: {e}). Set "
              "T0JAX_VOCAB (or t0jax.data.set_vocab(path)) to a local "
              "sentencepiece.model file."
            ) from e
        return self._model

    @property
    def sentencepiece_model_file(self) -> str:
      return self.resolved()[0]

    @property
    def extra_ids(self) -> int:
      return self.resolved()[1]

    def __getstate__(self):
      state = super().__getstate__()
      # Callables need not pickle (gin deep-copies vocabularies): keep the resolved values.
      state.pop("_path_fn", None)
      state.pop("_extra_ids_fn", None)
      state["_resolved"] = self.resolved()
      return state

    def __setstate__(self, state):
      path, extra_ids = state.pop("_resolved")
      self.__dict__.update(state)
      self._path_fn, self._extra_ids_fn = (lambda: path), (lambda: extra_ids)
      self._model = None

    def __eq__(self, other):
      if self is other:
        return True
      if not isinstance(other, seqio.SentencePieceVocabulary):
        return False
      return (self.sentencepiece_model_file, self.extra_ids) == (
        other.sentencepiece_model_file,
        other.extra_ids,
      )

    def __hash__(self):
      return id(self)

    def __str__(self) -> str:
      if self._model is None:
        return f"DeferredVocabulary({self._label}, not loaded yet)"
      return f"DeferredVocabulary({self._sentencepiece_model_file}, extra_ids={self._extra_ids})"

  # Pickle finds the class by this module's attribute of that name.
  DeferredVocabulary.__module__, DeferredVocabulary.__qualname__ = __name__, "DeferredVocabulary"
  return DeferredVocabulary


def __getattr__(name):
  if name != "DeferredVocabulary":
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  with _build_lock:
    if "DeferredVocabulary" not in globals():
      globals()["DeferredVocabulary"] = _build_deferred_class()
  return globals()["DeferredVocabulary"]


_catalog_vocabulary = None


def catalog_vocabulary():
  """The one vocabulary shared by every catalogue task (so mixtures see equal features)."""
  global _catalog_vocabulary
  if _catalog_vocabulary is None:
    _catalog_vocabulary = __getattr__("DeferredVocabulary")(
      settings.vocab_path, settings.vocab_extra_ids, label="catalogue"
    )
  return _catalog_vocabulary
