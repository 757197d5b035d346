"""Generation for tasks without answer choices: greedy or beam decoding with the KV cache.

Inputs are grouped by length bucket into power-of-two batches, as in scoring, so an evaluation
compiles a few programs. Decoding itself is the model seam's `predict_batch`
(t0jax/model/models.py; greedy and beam search in t0jax/model/decoding.py).
"""

from __future__ import annotations

import contextlib
from typing import List, Sequence

import jax
import numpy as np

from t0jax.data.vocab import EOS_ID
from t0jax.evaluate import batching
from t0jax.model.models import as_model
from t0jax.parallel import hosts


class Generator:
  """Decodes token inputs to token outputs; collective across hosts like `ChoiceScorer`."""

  def __init__(
    self,
    model,
    params,
    *,
    batch_size: int = 32,
    partitioner=None,
    num_beams: int = 1,
    length_penalty: float = 0.6,
    per_octave: int = 4,
  ):
    if num_beams < 1:
      raise ValueError(f"num_beams must be at least 1, got {num_beams}.")
    self.model, self.params, self.batch_size = as_model(model), params, batch_size
    self.partitioner, self.num_beams, self.length_penalty = partitioner, num_beams, length_penalty
    self.per_octave = per_octave
    self.slice_index, self.num_slices = hosts.data_slice(partitioner)
    self.row_multiple = (
      1 if partitioner is None else (partitioner.data_parallel_size // self.num_slices)
    )

  def generate(self, inputs: Sequence[Sequence[int]], max_decode_length: int) -> List[List[int]]:
    """Output tokens per input, EOS and padding removed."""
    steps = batching.plan_steps(
      [len(t) for t in inputs],
      [[1]] * len(inputs),
      batch_size=self.batch_size,
      per_octave=self.per_octave,
      row_multiple=self.row_multiple,
    )
    if self.partitioner is not None:
      steps = batching.align_plans(steps, hosts.allgather_json([s.signature for s in steps]))
    outputs: List[List[int]] = [[] for _ in inputs]
    context = contextlib.nullcontext() if self.partitioner is None else self.partitioner.activate()
    with context:
      for step in steps:
        enc = np.zeros((step.num_example_rows, step.input_length), np.int32)
        for r, i in enumerate(step.examples):
          enc[r, : len(inputs[i])] = inputs[i]
        out = self._local(self._decode(self._place(enc), max_decode_length))
        for r, i in enumerate(step.examples):
          row = [int(t) for t in out[r]]
          outputs[i] = row[: row.index(EOS_ID)] if EOS_ID in row else [t for t in row if t]
    return outputs

  def _decode(self, enc, max_decode_length):
    return self.model.predict_batch(
      self.params,
      enc,
      max_decode_length=max_decode_length,
      num_beams=self.num_beams,
      length_penalty=self.length_penalty,
    )

  def _place(self, enc):
    if self.partitioner is None:
      return enc
    return hosts.global_batch({"t": enc}, self.partitioner.batch_sharding, self.num_slices)["t"]

  def _local(self, out) -> np.ndarray:
    """This slice's rows of the output."""
    if self.partitioner is None or jax.process_count() == 1:
      return np.asarray(out)
    rows = out.shape[0] // self.num_slices
    start = self.slice_index * rows
    parts = {}
    for shard in out.addressable_shards:  # the shards this process holds, maybe duplicated
      lo, hi, _ = shard.index[0].indices(out.shape[0])
      parts[lo] = np.asarray(shard.data)[: hi - lo]
    full = np.concatenate([parts[k] for k in sorted(parts)])
    first = min(parts)
    return full[start - first : start - first + rows]
