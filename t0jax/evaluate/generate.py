"""Generation for tasks without answer choices: greedy or beam decoding with the KV cache.

Inputs are grouped by length bucket into power-of-two batches, as in scoring, so an evaluation
compiles a few programs. Beam search (`num_beams` > 1) keeps the `num_beams` best partial
outputs by summed log-probability, finished ones included, and returns the best finished
output after dividing its score by ((5 + length) / 6) ** `length_penalty` (the GNMT length
penalty T5X uses; 0 scores by plain sum).
"""
from __future__ import annotations

import contextlib
import functools
from typing import List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from t0jax.parallel import hosts
from t0jax.evaluate import batching
from t0jax.model.decoding import decode_step, greedy_decode, init_cache

EOS_ID = 1


@functools.partial(jax.jit, static_argnames=("model", "max_decode_length", "num_beams",
                                             "length_penalty"))
def beam_search(model, params, encoder_tokens, max_decode_length: int, num_beams: int,
                length_penalty: float = 0.6):
  """int32 [batch, max_decode_length]: each input's best finished output (0 after EOS)."""
  batch = encoder_tokens.shape[0]
  tokens = jnp.repeat(encoder_tokens, num_beams, axis=0)  # [batch * beams, L]
  encoded = model.apply({"params": params}, tokens, method=type(model).encode)
  cache = init_cache(model, params, encoded, tokens, max_decode_length)
  neg = jnp.float32(-1e9)
  # Only the first beam is live at the start, so the first step does not pick duplicates.
  scores = jnp.tile(jnp.array([0.0] + [neg] * (num_beams - 1), jnp.float32), (batch, 1))
  outputs = jnp.zeros((batch, num_beams, max_decode_length), jnp.int32)
  done = jnp.zeros((batch, num_beams), bool)
  lengths = jnp.zeros((batch, num_beams), jnp.int32)

  def body(i, state):
    cache, scores, outputs, done, lengths = state
    prev = jnp.where(i == 0, 0, outputs[:, :, jnp.maximum(i - 1, 0)]).reshape(-1)
    logits, cache = decode_step(model, params, cache, encoded, tokens, prev[:, None],
                                max_decode_length)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, num_beams, -1)
    vocab = log_probs.shape[-1]
    # A finished beam extends only with padding, at no cost, so it keeps its score and place.
    pad_only = jnp.full((vocab,), neg).at[0].set(0.0)
    log_probs = jnp.where(done[..., None], pad_only, log_probs)
    candidates = (scores[..., None] + log_probs).reshape(batch, -1)
    scores, flat = jax.lax.top_k(candidates, num_beams)
    beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
    pick = lambda x: jnp.take_along_axis(x, beam.reshape(batch, num_beams, *([1] * (x.ndim - 2))),
                                         axis=1)
    outputs = pick(outputs).at[:, :, i].set(token)
    was_done = pick(done)
    lengths = pick(lengths) + (~was_done).astype(jnp.int32)
    done = was_done | (token == EOS_ID)
    rows = (jnp.arange(batch)[:, None] * num_beams + beam).reshape(-1)
    # Cached keys/values follow their beam; scanned layers stack them behind a layer axis.
    axis = 1 if model.config.scan_layers else 0
    cache = jax.tree.map(lambda c: jnp.take(c, rows, axis=axis) if c.ndim > axis + 1 else c,
                         cache)
    return cache, scores, outputs, done, lengths

  _, scores, outputs, done, lengths = jax.lax.fori_loop(
      0, max_decode_length, body, (cache, scores, outputs, done, lengths))
  penalty = ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** length_penalty
  final = jnp.where(done, scores / penalty, scores / penalty - 1e6)  # unfinished: last resort
  best = jnp.argmax(final, axis=1)
  return jnp.take_along_axis(outputs, best[:, None, None], axis=1)[:, 0]


class Generator:
  """Decodes token inputs to token outputs; collective across hosts like `ChoiceScorer`."""

  def __init__(self, model, params, *, batch_size: int = 32, partitioner=None,
               num_beams: int = 1, length_penalty: float = 0.6, per_octave: int = 4):
    if num_beams < 1:
      raise ValueError(f"num_beams must be at least 1, got {num_beams}.")
    self.model, self.params, self.batch_size = model, params, batch_size
    self.partitioner, self.num_beams, self.length_penalty = partitioner, num_beams, length_penalty
    self.per_octave = per_octave
    self.slice_index, self.num_slices = hosts.data_slice(partitioner)
    self.row_multiple = 1 if partitioner is None else (
        partitioner.data_parallel_size // self.num_slices)

  def generate(self, inputs: Sequence[Sequence[int]], max_decode_length: int) -> List[List[int]]:
    """Output tokens per input, EOS and padding removed."""
    steps = batching.plan_steps([len(t) for t in inputs], [[1]] * len(inputs),
                                batch_size=self.batch_size, per_octave=self.per_octave,
                                row_multiple=self.row_multiple)
    if self.partitioner is not None:
      steps = batching.align_plans(steps, hosts.allgather_json([s.signature for s in steps]))
    outputs: List[List[int]] = [[] for _ in inputs]
    context = contextlib.nullcontext() if self.partitioner is None else self.partitioner.activate()
    with context:
      for step in steps:
        enc = np.zeros((step.num_example_rows, step.input_length), np.int32)
        for r, i in enumerate(step.examples):
          enc[r, :len(inputs[i])] = inputs[i]
        out = self._local(self._decode(self._place(enc), max_decode_length))
        for r, i in enumerate(step.examples):
          row = [int(t) for t in out[r]]
          outputs[i] = row[:row.index(EOS_ID)] if EOS_ID in row else [t for t in row if t]
    return outputs

  def _decode(self, enc, max_decode_length):
    if self.num_beams == 1:
      return greedy_decode(self.model, self.params, enc, max_decode_length=max_decode_length,
                           eos_id=EOS_ID)
    return beam_search(self.model, self.params, enc, max_decode_length=max_decode_length,
                       num_beams=self.num_beams, length_penalty=self.length_penalty)

  def _place(self, enc):
    if self.partitioner is None:
      return enc
    return hosts.global_batch(self.partitioner, {"t": enc}, self.num_slices)["t"]

  def _local(self, out) -> np.ndarray:
    """This slice's rows of the output."""
    if self.partitioner is None or jax.process_count() == 1:
      return np.asarray(out)
    rows = out.shape[0] // self.num_slices
    start = self.slice_index * rows
    parts = {}
    for shard in out.addressable_shards:  # the shards this process holds, maybe duplicated
      lo, hi, _ = shard.index[0].indices(out.shape[0])
      parts[lo] = np.asarray(shard.data)[:hi - lo]
    full = np.concatenate([parts[k] for k in sorted(parts)])
    first = min(parts)
    return full[start - first:start - first + rows]
