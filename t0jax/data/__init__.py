"""Data layer of the prompted tasks: raw-example sources, the prompting DataSource, score-eval
preprocessing, deferred vocabularies and the settings that say where data lives.

The catalogue (`t0jax.catalog`) builds seqio tasks out of these pieces.
"""
from t0jax.tf_setup import import_tensorflow

import_tensorflow()  # before seqio and TFDS load it: quiet, no GPUs for TensorFlow
from t0jax.data.settings import (DEFAULT_VOCAB, configure, set_data_dir, set_source,
                                 set_tfds_data_dir, set_vocab)
from t0jax.data.readers import DataUnavailableError, SourceSpec, open_split, shard_range
from t0jax.data.skips import skip_counts
from t0jax.data.source import PromptedDataSource, PromptRef
from t0jax.data.preprocessors import (answer_index_postprocessor, output_features,
                                      rank_classification_accuracy, score_eval_preprocessors,
                                      tokenize_choices, train_preprocessors)
from t0jax.data.vocab import DeferredVocabulary, catalog_vocabulary

__all__ = [
    "DEFAULT_VOCAB", "DataUnavailableError", "DeferredVocabulary", "PromptRef",
    "PromptedDataSource", "SourceSpec", "answer_index_postprocessor", "catalog_vocabulary",
    "configure", "open_split", "output_features", "rank_classification_accuracy",
    "score_eval_preprocessors", "set_data_dir", "set_source", "set_tfds_data_dir", "set_vocab",
    "shard_range", "skip_counts", "tokenize_choices", "train_preprocessors",
]
