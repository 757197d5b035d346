"""Rank-classification accuracy, the one definition used by the tasks' seqio metric
(`preprocessors.rank_classification_accuracy`) and by `t0jax eval` (`evaluate/metrics.py`).

numpy only, so the evaluator can import it without TensorFlow.
"""

from typing import Sequence

import numpy as np

NOT_IN_CHOICES = -1  # `answer_idx` of an example whose gold answer is not among its choices


def rank_accuracy(gold: Sequence[int], predicted: Sequence[int]) -> float:
  """Percentage of examples whose predicted choice is the gold one. Examples with gold
  `NOT_IN_CHOICES` (any negative index) are left out; NaN when none is left."""
  gold, predicted = np.asarray(gold, np.int64), np.asarray(predicted, np.int64)
  if gold.shape != predicted.shape:
    raise ValueError(f"{gold.size} targets but {predicted.size} predictions")
  keep = gold >= 0
  if not keep.any():
    return float("nan")
  return 100.0 * float(np.mean(predicted[keep] == gold[keep]))


def num_not_in_choices(gold: Sequence[int]) -> int:
  """Examples left out of `rank_accuracy` because their gold answer is not a choice."""
  return int(np.sum(np.asarray(gold, np.int64) < 0))
