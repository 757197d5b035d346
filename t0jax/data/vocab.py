"""Sentencepiece vocabularies whose file is chosen when first used, not when a task is built.

Tasks are built at `import t0jax.catalog`; a plain `seqio.SentencePieceVocabulary` would freeze
the vocabulary path at that moment (before a user or a gin file could set it) and loading it
would touch its file (a `gs://` path for the T5 vocabulary). `DeferredVocabulary` asks a
resolver function for the path at first use instead.
"""
import threading
import weakref
from typing import Callable, Union

from t0jax.data.tf_setup import import_tensorflow

import_tensorflow()  # before seqio loads it: quiet, no GPUs for TensorFlow
import seqio

from t0jax.data import settings

_live: "weakref.WeakSet[DeferredVocabulary]" = weakref.WeakSet()
_lock = threading.Lock()


class DeferredVocabulary(seqio.SentencePieceVocabulary):
    """A `seqio.SentencePieceVocabulary` whose model file (and extra ids) come from callables."""

    def __init__(self, path: Union[str, Callable[[], str]], extra_ids: Union[int, Callable[[], int]] = 0,
                 label: str = "vocabulary"):
        self._path_fn = path if callable(path) else (lambda: path)
        self._extra_ids_fn = extra_ids if callable(extra_ids) else (lambda: extra_ids)
        self._label = label
        super().__init__(sentencepiece_model_file="", extra_ids=0)
        _live.add(self)

    def resolved(self) -> tuple:
        """(model file, extra ids) as the settings say now; reads no file."""
        if self._model is not None:
            return self._sentencepiece_model_file, self._extra_ids
        return self._path_fn(), int(self._extra_ids_fn())

    def _resolve(self) -> None:
        self._sentencepiece_model_file, self._extra_ids = self.resolved()

    def _model_context(self):
        with _lock:
            if self._model is None:
                self._resolve()
                try:
                    return super()._model_context()
                except Exception as e:
                    raise OSError(
                        f"cannot load the {self._label} sentencepiece model "
                        f"{self._sentencepiece_model_file!r} ({type(e).__name__}: {e}). Set "
                        "T0JAX_VOCAB (or t0jax.data.set_vocab(path)) to a local "
                        "sentencepiece.model file.") from e
            return self._model

    @property
    def sentencepiece_model_file(self) -> str:
        return self.resolved()[0]

    @property
    def extra_ids(self) -> int:
        return self.resolved()[1]

    def forget(self) -> None:
        with _lock:
            self._model = None

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
        _live.add(self)

    def __eq__(self, other):
        if self is other:
            return True
        if not isinstance(other, seqio.SentencePieceVocabulary):
            return False
        return (self.sentencepiece_model_file, self.extra_ids) == (
            other.sentencepiece_model_file, other.extra_ids)

    def __hash__(self):
        return id(self)

    def __str__(self) -> str:
        if self._model is None:
            return f"DeferredVocabulary({self._label}, not loaded yet)"
        return f"DeferredVocabulary({self._sentencepiece_model_file}, extra_ids={self._extra_ids})"


def forget_loaded_models() -> None:
    """Make every deferred vocabulary ask for its path again (after the setting changed)."""
    for v in list(_live):
        v.forget()


_catalog_vocabulary = None


def catalog_vocabulary() -> DeferredVocabulary:
    """The one vocabulary shared by every catalogue task (so mixtures see equal features)."""
    global _catalog_vocabulary
    if _catalog_vocabulary is None:
        _catalog_vocabulary = DeferredVocabulary(settings.vocab_path, settings.vocab_extra_ids,
                                                 label="catalogue")
    return _catalog_vocabulary
