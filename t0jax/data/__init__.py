"""Data layer of the prompted tasks: raw-example sources, the prompting DataSource, score-eval
preprocessing, the vocabulary, the settings that say where data lives, and the training input
pipeline (packed batches, virtual shards, the data process).

The catalogue (`t0jax.catalog`) builds seqio tasks out of these pieces. Importing this package
imports nothing heavy: the names below load their module (and TensorFlow, where it needs it) on
first use, so `t0jax predict` can use the TF-free vocabulary without TensorFlow.
"""

import importlib

_EXPORTS = {
  "DEFAULT_VOCAB": "settings",
  "configure": "settings",
  "set_data_dir": "settings",
  "set_source": "settings",
  "set_tfds_data_dir": "settings",
  "set_vocab": "settings",
  "set_p3_dir": "settings",
  "set_cache_dirs": "settings",
  "write_cache": "caches",
  "DataUnavailableError": "readers",
  "SourceSpec": "readers",
  "open_split": "readers",
  "shard_range": "readers",
  "skip_counts": "skips",
  "PromptedDataSource": "source",
  "PromptRef": "source",
  "answer_index_postprocessor": "preprocessors",
  "output_features": "preprocessors",
  "rank_classification_accuracy": "preprocessors",
  "score_eval_preprocessors": "preprocessors",
  "tokenize_choices": "preprocessors",
  "train_preprocessors": "preprocessors",
  "DeferredVocabulary": "vocab",
  "catalog_vocabulary": "vocab",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f"module 't0jax.data' has no attribute {name!r}")
  return getattr(importlib.import_module(f"t0jax.data.{_EXPORTS[name]}"), name)
