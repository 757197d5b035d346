"""Rank-classification scores on device: every input encoded once, its choices decoded packed.

`ChoiceScorer.score` returns, per example, the float64 sum of each choice's token
log-probabilities (EOS included) given the input, the number T0 ranks choices by. Steps come
from `batching.plan_steps`; one compiled program runs a step: it encodes the step's inputs once
and decodes every chunk of choice rows against those encodings, which never leave the device.

Packing several choices into one decoder row needs the row's self-attention split by choice
(segment ids) while its cross-attention sees the whole input. The model ties both masks to the
same segment ids, so the cross-attention mask is replaced through flax's public method
interception; a trace-time check fails loudly if the model's cross-attention module is renamed.
"""
from __future__ import annotations

import contextlib
import functools
from typing import List, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from t0jax.parallel import hosts
from t0jax.evaluate import batching

EOS_ID = 1
_CROSS_ATTENTION = "encoder_decoder_attention"  # the decoder layers' cross-attention module


def _token_log_probs(model, params, encoded, encoder_tokens, slots, decoder_inputs,
                     decoder_targets, decoder_segments, packed: bool):
  """log p(target token) [rows, length], 0 at padding; row r decodes against input `slots[r]`."""
  encoded, encoder_tokens = encoded[slots], encoder_tokens[slots]
  if not packed:
    logits = model.apply({"params": params}, encoded, encoder_tokens, decoder_inputs,
                         decoder_targets, method=type(model).decode)
  else:
    cross_mask = (encoder_tokens > 0)[:, None, None, :]
    replaced = []

    def interceptor(next_fun, args, kwargs, context):
      if context.method_name == "__call__" and context.module.name == _CROSS_ATTENTION:
        replaced.append(context.module.name)
        args = (args[0], args[1], cross_mask) + tuple(args[3:])
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
      logits = model.apply({"params": params}, encoded, encoder_tokens, decoder_inputs,
                           decoder_targets, jnp.zeros_like(encoder_tokens), decoder_segments,
                           method=type(model).decode)
    if not replaced:
      raise RuntimeError(
          f"Packed choice scoring found no '{_CROSS_ATTENTION}' module in the decoder (was the "
          "model changed?). Score with pack_choices=False, or update "
          "t0jax/evaluate/scorer.py to the model's cross-attention module name.")
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_probs, decoder_targets[..., None], axis=-1)[..., 0]
  return jnp.where(decoder_targets > 0, picked, 0.0)


def _step(model, params, encoder_tokens, slots, decoder_inputs, decoder_targets,
          decoder_segments, *, packed: bool, num_chunks: int, num_hosts: int):
  """One scoring step: encode once, decode every chunk against the encodings.

  Decoder arrays hold each data slice's rows chunk-major ([chunks * rows, ...] per slice, slices
  one after another); they are regrouped to [chunks, all slices' rows, ...] and decoded in turn.
  """
  encoded = model.apply({"params": params}, encoder_tokens, method=type(model).encode)
  decode = functools.partial(_token_log_probs, model, params, encoded, encoder_tokens,
                             packed=packed)
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

  def __init__(self, model, params, *, batch_size: int = 32, partitioner=None,
               pack_choices: bool = True, max_row_tokens: int = 256, per_octave: int = 4):
    if batch_size < 1:
      raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    self.model, self.params = model, params
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
        [len(t) for t in inputs], [[len(c) for c in cs] for cs in choices],
        batch_size=self.batch_size, max_row_tokens=self.max_row_tokens,
        per_octave=self.per_octave, row_multiple=self.row_multiple)
    if self.partitioner is None:
      return steps
    signatures = hosts.allgather_json([s.signature for s in steps])
    return batching.align_plans(steps, signatures)

  def score(self, inputs: Sequence[Sequence[int]], choices: Sequence[Sequence[Sequence[int]]]):
    """(scores, token_counts) per example: float64 [num_choices] summed log-probabilities and
    int64 [num_choices] tokens per choice (EOS included). Inputs have no EOS; every choice must
    end with EOS (checked by the caller, `t0jax.evaluate.data`)."""
    if len(inputs) != len(choices):
      raise ValueError(f"{len(inputs)} inputs but {len(choices)} choice lists.")
    scores = [np.zeros(len(c), np.float64) for c in choices]
    for step in self.plan(inputs, choices):
      self._run(step, inputs, choices, scores)
    counts = [np.array([len(c) for c in cs], np.int64) for cs in choices]
    return scores, counts

  def _place(self, arrays: dict) -> dict:
    if self.partitioner is None:
      return arrays
    return hosts.global_batch(self.partitioner, arrays, self.num_slices)

  def _run(self, step: batching.Step, inputs, choices, scores) -> None:
    enc = np.zeros((step.num_example_rows, step.input_length), np.int32)
    for r, i in enumerate(step.examples):
      enc[r, :len(inputs[i])] = inputs[i]
    host, num_hosts = (0, 1) if self.partitioner is None else (self.slice_index, self.num_slices)
    # Rows of earlier slices come first in the global encoder batch.
    batch = _decoder_arrays(step, choices, slot_offset=host * step.num_example_rows)
    with self._context():
      log_probs = self._program(self.model, self.params, **self._place({"encoder_tokens": enc,
                                                                        **batch}),
                                packed=self.pack_choices, num_chunks=len(step.chunks),
                                num_hosts=num_hosts)
    log_probs = _to_host(log_probs)
    per_host = len(step.chunks) * step.num_rows
    log_probs = log_probs[host * per_host:(host + 1) * per_host]
    for k, chunk in enumerate(step.chunks):
      for r, row in enumerate(chunk):
        position = 0
        for j in row.choices:
          n = len(choices[row.example][j])
          scores[row.example][j] = log_probs[k * step.num_rows + r,
                                             position:position + n].astype(np.float64).sum()
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
        targets[r, position:position + n] = tokens
        inputs[r, position + 1:position + n] = tokens[:-1]
        segments[r, position:position + n] = s
        position += n
  return {"slots": slots, "decoder_inputs": inputs, "decoder_targets": targets,
          "decoder_segments": segments}
