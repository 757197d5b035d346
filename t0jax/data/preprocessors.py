"""Task pipelines after rendering: tokenization, score-eval choices, rank-classification metric.

seqio has no rank-classification pieces (they live in the `t5` package, which t0jax cannot
depend on), so the choice tokenization and the accuracy metric are written here.
"""

from typing import Mapping, Optional, Sequence

from t0jax.data import accuracy
from t0jax.data.tf_setup import import_tensorflow

import_tensorflow()  # before seqio loads it: quiet, no GPUs for TensorFlow
import seqio
import tensorflow as tf


def output_features(vocabulary: seqio.Vocabulary) -> dict:
  """T0's features: inputs without EOS, targets with EOS (REFERENCE.md section 1)."""
  return {
    "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=False, dtype=tf.int32),
    "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32),
  }


@seqio.map_over_dataset
def _tokenize_choices(example, vocabulary, max_length: Optional[int]):
  choices = vocabulary.encode_tf(example["answer_choices"])  # ragged [C, None]
  if max_length:
    # Same rule as seqio's append_eos_after_trim on `targets`: room for the EOS is kept, so
    # the correct choice's tokens equal `targets`.
    choices = choices[:, : max_length - 1]
  eos = tf.fill(
    [tf.shape(example["answer_choices"])[0], 1], tf.constant(vocabulary.eos_id, tf.int32)
  )
  out = {k: v for k, v in example.items() if k != "answer_choices"}
  out["choices"] = tf.concat([tf.cast(choices, tf.int32), tf.RaggedTensor.from_tensor(eos)], axis=1)
  out["choices_pretokenized"] = example["answer_choices"]
  return out


def tokenize_choices(
  dataset: tf.data.Dataset,
  output_features: Mapping[str, seqio.Feature],
  sequence_length: Optional[Mapping[str, int]] = None,
) -> tf.data.Dataset:
  """`answer_choices` [C] strings -> `choices` int32 ragged [C, None], each ending with EOS
  (and trimmed like `targets` when a targets length is given), plus `choices_pretokenized`."""
  max_length = (sequence_length or {}).get("targets")
  return _tokenize_choices(
    dataset, vocabulary=output_features["targets"].vocabulary, max_length=max_length
  )


def load_vocabularies(
  dataset: tf.data.Dataset, output_features: Mapping[str, seqio.Feature]
) -> tf.data.Dataset:
  """Load the vocabularies now, in Python: a missing model file then fails with its own message
  instead of surfacing inside a traced tf.data function."""
  for feature in output_features.values():
    feature.vocabulary.eos_id  # noqa: B018  (reading it loads the model)
  return dataset


def _cacheable() -> list:
  # t-zero's order (tokenize, append EOS, cache placeholder), so a SeqIO cache written from a
  # catalogue task holds what P3's caches hold; lengths apply after the cache (caches.py).
  return [
    load_vocabularies,
    seqio.preprocessors.tokenize,
    seqio.preprocessors.append_eos,
    seqio.CacheDatasetPlaceholder(required=False),
  ]


def train_preprocessors() -> list:
  from t0jax.data.caches import trim_keeping_eos

  return _cacheable() + [trim_keeping_eos]


def score_eval_preprocessors() -> list:
  from t0jax.data.caches import trim_keeping_eos

  return _cacheable() + [tokenize_choices, trim_keeping_eos]


def answer_index_postprocessor(output, example=None, is_target=False):
  """Targets become the gold choice index (`answer_idx`, -1 when the gold answer is not among
  the choices); predictions are the index the scorer picked."""
  if is_target:
    return int(example["answer_idx"])
  return int(output)


def rank_classification_accuracy(targets: Sequence[int], predictions: Sequence[int]) -> dict:
  """Percentage of examples whose highest-scoring choice is the gold one, as `t0jax eval`
  reports it (t0jax/data/accuracy.py): an example whose gold answer is not among its choices
  (`answer_idx` -1) is left out of the accuracy and counted in `num_target_not_in_choices`."""
  return {
    "accuracy": accuracy.rank_accuracy(targets, predictions),
    "num_target_not_in_choices": accuracy.num_not_in_choices(targets),
  }
