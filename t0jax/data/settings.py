"""Where prompted data comes from: local JSONL folder, TFDS folder, source preference, vocabulary.

Every setting has three spellings so each kind of user finds one: an environment variable (shell
users, launch scripts), a setter (Python), and `configure()` bound from gin (T5X-style configs).
Settings are read when data is read, never at import, so they may change after
`import t0jax.catalog`.
"""

import os
from typing import Optional

import gin

# The T5 sentencepiece model every T5 / T0 checkpoint was trained with (32000 pieces; seqio adds
# the 100 sentinel ids on top, giving 32100 ids, padded to 32128 in the embedding table).
DEFAULT_VOCAB = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
DEFAULT_VOCAB_EXTRA_IDS = 100

SOURCE_CHOICES = ("auto", "jsonl", "generator", "tfds", "hf")

_overrides: dict = {}
# Bumped by every change, so readers that cache what a setting named (the deferred vocabulary in
# t0jax/data/vocab.py) know to look again; settings import nothing of theirs.
_version = 0


def _set(key: str, value) -> None:
  global _version
  # None drops the override, so the environment variable (or the default) applies again.
  if value is None:
    _overrides.pop(key, None)
  else:
    _overrides[key] = os.fspath(value) if isinstance(value, os.PathLike) else value
  _version += 1


def version() -> int:
  """A number that changes whenever a setter (or `reset`, `apply`) changes a setting."""
  return _version


def snapshot() -> dict:
  """Every setter call in effect, as a JSON-ready dict (for `apply` in another process)."""
  return dict(_overrides)


def apply(saved: dict) -> None:
  """Make the settings of `snapshot()` (taken here or in another process) the current ones."""
  global _version
  _overrides.clear()
  _overrides.update(saved)
  _version += 1


def _get(key: str, env: str, default=None):
  if key in _overrides:
    return _overrides[key]
  value = os.environ.get(env)
  return value if value not in (None, "") else default


def set_data_dir(path) -> None:
  """Read `<path>/<dataset>[/<subset>]/<split>.jsonl` before any other source (None: unset)."""
  _set("data_dir", path)


def data_dir() -> Optional[str]:
  return _get("data_dir", "T0JAX_DATA_DIR")


def set_tfds_data_dir(path: Optional[str]) -> None:
  """Folder holding prepared TFDS datasets (None: TFDS's own default, ~/tensorflow_datasets)."""
  _set("tfds_data_dir", path)


def tfds_data_dir() -> Optional[str]:
  return _get("tfds_data_dir", "T0JAX_TFDS_DATA_DIR")


def set_source(source: Optional[str]) -> None:
  """Force one kind of source for every dataset instead of the automatic priority order."""
  if source is not None and source not in SOURCE_CHOICES:
    raise ValueError(f"data source {source!r} is not one of {', '.join(SOURCE_CHOICES)}")
  _set("source", source)


def source() -> str:
  value = _get("source", "T0JAX_DATA_SOURCE", "auto")
  if value not in SOURCE_CHOICES:
    raise ValueError(f"T0JAX_DATA_SOURCE={value!r} is not one of {', '.join(SOURCE_CHOICES)}")
  return value


def set_p3_dir(path) -> None:
  """Read T0's tasks from a local copy of bigscience/P3 (already prompted and tokenized; see
  t0jax/data/p3.py) instead of rendering them (None: unset)."""
  _set("p3_dir", path)


def p3_dir() -> Optional[str]:
  return _get("p3_dir", "T0JAX_P3_DIR")


def set_cache_dirs(paths) -> None:
  """Extra SeqIO cache directories (T5X's `--seqio_additional_cache_dirs`), searched for
  `<dir>/<task>/` when tasks are read with `use_cached` (None or []: unset)."""
  _set("cache_dirs", list(map(os.fspath, paths)) if paths else None)


def cache_dirs() -> list:
  value = _get("cache_dirs", "T0JAX_SEQIO_CACHE_DIRS", [])
  # The environment spelling is one string: directories separated by commas.
  return [d for d in value.split(",") if d] if isinstance(value, str) else list(value)


def set_promptsource_dir(path) -> None:
  """Take the T0 datasets' prompts from a promptsource template tree (`promptsource/templates/`
  of a checkout or sdist; `t0jax prompts fetch` gets one) and register the T0 mixtures exactly
  as t-zero did (tasks/t0.py); None: the catalogue's own prompts."""
  _set("promptsource_dir", path)


def promptsource_dir() -> Optional[str]:
  return _get("promptsource_dir", "T0JAX_PROMPTSOURCE")


def set_vocab(path: Optional[str], extra_ids: Optional[int] = None) -> None:
  """Sentencepiece model used by the catalogue's tasks (not the demo's, which ships its own)."""
  _set("vocab", path)
  if extra_ids is not None:
    _set("vocab_extra_ids", int(extra_ids))


def vocab_path() -> str:
  return _get("vocab", "T0JAX_VOCAB", DEFAULT_VOCAB)


def vocab_extra_ids() -> int:
  value = _get("vocab_extra_ids", "T0JAX_VOCAB_EXTRA_IDS", DEFAULT_VOCAB_EXTRA_IDS)
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"T0JAX_VOCAB_EXTRA_IDS={value!r} is not an integer") from None


def reset() -> None:
  """Forget every setter call (environment variables apply again)."""
  apply({})


@gin.configurable("t0jax.data")
def configure(
  data_dir=None,
  tfds_data_dir=None,
  source=None,
  vocab=None,
  vocab_extra_ids=None,
  p3_dir=None,
  cache_dirs=None,
  promptsource_dir=None,
):
  """Apply gin bindings such as `t0jax.data.data_dir = "/data/t0"`; the trainer calls this once
  after parsing its gin files. Unbound arguments leave the current setting alone."""
  if data_dir is not None:
    set_data_dir(data_dir)
  if tfds_data_dir is not None:
    set_tfds_data_dir(tfds_data_dir)
  if source is not None:
    set_source(source)
  if p3_dir is not None:
    set_p3_dir(p3_dir)
  if cache_dirs is not None:
    set_cache_dirs(cache_dirs)
  if promptsource_dir is not None:
    set_promptsource_dir(promptsource_dir)
  if vocab is not None:
    set_vocab(vocab, vocab_extra_ids)
  elif vocab_extra_ids is not None:
    set_vocab(_overrides.get("vocab"), vocab_extra_ids)
