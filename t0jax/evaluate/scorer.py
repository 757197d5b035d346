"""Rank-classification scores on device: every input encoded once, its choices decoded packed.

`ChoiceScorer.score` returns, per example, the float64 sum of each choice's token
log-probabilities (EOS included) given the input, the number T0 ranks choices by. Steps come
from `batching.plan_steps`; one compiled program runs a step: it encodes the step's inputs once
and decodes every chunk of choice rows against those encodings, which never leave the device.

The network runs behind the model seam (`t0jax.model.models.EncoderDecoderModel`): encodings
from `encode`, packed choice log-probabilities from `token_log_probs` with segment ids.
"""

from __future__ import annotations

import contextlib
import functools
from typing import List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from t0jax.data.vocab import EOS_ID
from t0jax.evaluate import batching
from t0jax.model.models import as_model
from t0jax.parallel import hosts


def _token_log_probs(
  model,
  params,
  encoded,
  encoder_tokens,
  slots,
  decoder_inputs,
  decoder_targets,
  decoder_segments,
  packed: bool,
):
  """log p(target token) [rows, length], 0 at padding; row r decodes against input `slots[r]`."""
  return model.token_log_probs(
    params,
    encoded[slots],
    encoder_tokens[slots],
    decoder_inputs,
    decoder_targets,
    decoder_segments if packed else None,
  )


def _step(
  model,
  params,
  encoder_tokens,
  slots,
  decoder_inputs,
  decoder_targets,
  decoder_segments,
  *,
  packed: bool,
  num_chunks: int,
  num_hosts: int,
):
  """One scoring step: encode once, decode every chunk against the encodings.

  Decoder arrays hold each data slice's rows chunk-major ([chunks * rows, ...] per slice, slices
  one after another); they are regrouped to [chunks, all slices' rows, ...] and decoded in turn.
  """
  model = as_model(model)
  encoded = model.encode(params, encoder_tokens)
  decode = functools.partial(
    _token_log_probs, model, params, encoded, encoder_tokens, packed=packed
  )
  arrays = (slots, decoder_inputs, decoder_targets, decoder_segments)
  if num_chunks == 1:
    return decode(*arrays)

  def by_chunk(x):
    x = x.reshape((num_hosts, num_chunks, -1) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1).reshape((num_chunks, -1) + x.shape[3:])

  out = jax.lax.map(lambda a: decode(*a), tuple(by_chunk(x) for x in arrays))
  out = jnp.swapaxes(out.reshape((num_chunks, num_hosts, -1) + out.shape[2:]), 0, 1)
  return out.reshape((-1,) + out.shape[3:])


@functools.lru_cache(maxsize=None)
def _program(replicated_out):
  """The jitted step (cached, so repeated evaluations reuse its compilations)."""
  kw = {} if replicated_out is None else {"out_shardings": replicated_out}
  return jax.jit(_step, static_argnames=("model", "packed", "num_chunks", "num_hosts"), **kw)


def _to_host(x) -> np.ndarray:
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(x)
  return np.asarray(x.addressable_shards[0].data)  # replicated: every host holds it all


class ChoiceScorer:
  """Scores answer choices with `model`/`params`, optionally on a `Partitioner`'s mesh.

  With a partitioner, batches are sharded over its 'data' axis (row counts are rounded to the
  data-parallel size) and every call is collective across hosts: all hosts must call `score` in
  the same order, each with the examples of its data slice (possibly none).
  """

  def __init__(
    self,
    model,
    params,
    *,
    batch_size: int = 32,
    partitioner=None,
    pack_choices: bool = True,
    max_row_tokens: int = 256,
    per_octave: int = 4,
  ):
    if batch_size < 1:
      raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    self.model, self.params = as_model(model), params
    self.batch_size = batch_size
    self.partitioner = partitioner
    self.pack_choices = pack_choices
    self.max_row_tokens = max_row_tokens if pack_choices else 0
    self.per_octave = per_octave
    self.slice_index, self.num_slices = hosts.data_slice(partitioner)
    self.row_multiple = 1
    if partitioner is not None:
      self.row_multiple = partitioner.data_parallel_size // self.num_slices
    self._program = _program(None if partitioner is None else partitioner.replicated)

  def plan(self, inputs, choices) -> List[batching.Step]:
    steps = batching.plan_steps(
      [len(t) for t in inputs],
      [[len(c) for c in cs] for cs in choices],
      batch_size=self.batch_size,
      max_row_tokens=self.max_row_tokens,
      per_octave=self.per_octave,
      row_multiple=self.row_multiple,
    )
    if self.partitioner is None:
      return steps
    signatures = hosts.allgather_json([s.signature for s in steps])
    return batching.align_plans(steps, signatures)

  def score(self, inputs: Sequence[Sequence[int]], choices: Sequence[Sequence[Sequence[int]]]):
    """(scores, token_counts) per example: float64 [num_choices] summed log-probabilities and
    int64 [num_choices] tokens per choice (EOS included). Inputs have no EOS; every choice must
    end with EOS, and every id be inside the model's vocabulary (ValueError naming the example)."""
    check_examples(inputs, choices, self.model.config.vocab_size)
    scores = [np.zeros(len(c), np.float64) for c in choices]
    for step in self.plan(inputs, choices):
      self._run(step, inputs, choices, scores)
    counts = [np.array([len(c) for c in cs], np.int64) for cs in choices]
    return scores, counts

  def _place(self, arrays: dict) -> dict:
    if self.partitioner is None:
      return arrays
    return hosts.global_batch(arrays, self.partitioner.batch_sharding, self.num_slices)

  def _run(self, step: batching.Step, inputs, choices, scores) -> None:
    enc = np.zeros((step.num_example_rows, step.input_length), np.int32)
    for r, i in enumerate(step.examples):
      enc[r, : len(inputs[i])] = inputs[i]
    host, num_hosts = (0, 1) if self.partitioner is None else (self.slice_index, self.num_slices)
    # Rows of earlier slices come first in the global encoder batch.
    batch = _decoder_arrays(step, choices, slot_offset=host * step.num_example_rows)
    with self._context():
      log_probs = self._program(
        self.model,
        self.params,
        **self._place({"encoder_tokens": enc, **batch}),
        packed=self.pack_choices,
        num_chunks=len(step.chunks),
        num_hosts=num_hosts,
      )
    log_probs = _to_host(log_probs)
    per_host = len(step.chunks) * step.num_rows
    log_probs = log_probs[host * per_host : (host + 1) * per_host]
    for k, chunk in enumerate(step.chunks):
      for r, row in enumerate(chunk):
        position = 0
        for j in row.choices:
          n = len(choices[row.example][j])
          scores[row.example][j] = (
            log_probs[k * step.num_rows + r, position : position + n].astype(np.float64).sum()
          )
          position += n

  def _context(self):
    if self.partitioner is None:
      return contextlib.nullcontext()
    return self.partitioner.activate()


def _decoder_arrays(step: batching.Step, choices, slot_offset: int) -> dict:
  """Decoder inputs (targets shifted right within each choice, 0 as start token), targets,
  segment ids (1, 2, ... per choice; 0 = padding) and the encoder row of every decoder row,
  chunk after chunk."""
  shape = (len(step.chunks) * step.num_rows, step.row_length)
  targets, inputs = np.zeros(shape, np.int32), np.zeros(shape, np.int32)
  segments = np.zeros(shape, np.int32)
  slots = np.full(shape[0], slot_offset, np.int32)
  for k, chunk in enumerate(step.chunks):
    for r, row in enumerate(chunk, k * step.num_rows):
      slots[r] = slot_offset + row.slot
      position = 0
      for s, j in enumerate(row.choices, 1):
        tokens = choices[row.example][j]
        n = len(tokens)
        targets[r, position : position + n] = tokens
        inputs[r, position + 1 : position + n] = tokens[:-1]
        segments[r, position : position + n] = s
        position += n
  return {
    "slots": slots,
    "decoder_inputs": inputs,
    "decoder_targets": targets,
    "decoder_segments": segments,
  }


def check_examples(inputs, choices, vocab_size: int) -> None:
  """ValueError naming the first example that cannot be scored, and why."""
  if len(inputs) != len(choices):
    raise ValueError(f"{len(inputs)} inputs but {len(choices)} choice lists.")
  for i, (tokens, options) in enumerate(zip(inputs, choices)):
    if len(tokens) == 0:
      raise ValueError(f"Example {i} has an empty input; every input needs at least one token.")
    if len(options) == 0:
      raise ValueError(f"Example {i} has no answer choices; give at least one.")
    for j, choice in enumerate(options):
      if len(choice) == 0 or choice[-1] != EOS_ID:
        raise ValueError(
          f"Example {i}, choice {j}: choice tokens must end with EOS (id {EOS_ID}); "
          f"got {list(choice)[-5:]}."
        )
    for name, seq in [("input", tokens)] + [(f"choice {j}", c) for j, c in enumerate(options)]:
      bad = [t for t in seq if not 0 < t < vocab_size]
      if bad:
        raise ValueError(
          f"Example {i}, {name}: token id {bad[0]} is outside 1..{vocab_size - 1} "
          "(the model's vocabulary); was it tokenised with another vocabulary?"
        )
