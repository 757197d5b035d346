"""Decoding with the key/value cache: greedy and beam search.

Both take an `EncoderDecoderModel` (t0jax/model/models.py), whose `init_cache` and
`decode_step` run the network; `EncoderDecoderModel.predict_batch` is the entry point.

Beam search keeps the `num_beams` best partial outputs by summed log-probability, finished ones
included, and returns the best finished output after dividing its score by
((5 + length) / 6) ** `length_penalty` (the GNMT length penalty T5X uses; 0 scores by plain sum).
"""

import functools

import jax
import jax.numpy as jnp

from t0jax.data.vocab import EOS_ID


@functools.partial(jax.jit, static_argnames=("model", "max_decode_length", "eos_id"))
def greedy_decode(
  model, params, encoder_input_tokens, max_decode_length: int, eos_id: int = EOS_ID
):
  """Greedy decoding: int32 [batch, max_decode_length]; positions after EOS are 0 (padding)."""
  encoded = model.encode(params, encoder_input_tokens)
  cache = model.init_cache(params, encoded, encoder_input_tokens, max_decode_length)
  batch = encoder_input_tokens.shape[0]

  def body(state):
    i, cache, prev, out, done = state
    logits, cache = model.decode_step(
      params, cache, encoded, encoder_input_tokens, prev[:, None], max_decode_length
    )
    nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    nxt = jnp.where(done, 0, nxt)
    out = out.at[:, i].set(nxt)
    return i + 1, cache, nxt, out, done | (nxt == eos_id)

  def cond(state):
    i, _, _, _, done = state
    return (i < max_decode_length) & ~jnp.all(done)

  state = (
    jnp.int32(0),
    cache,
    jnp.zeros((batch,), jnp.int32),
    jnp.zeros((batch, max_decode_length), jnp.int32),
    jnp.zeros((batch,), bool),
  )
  return jax.lax.while_loop(cond, body, state)[3]


@functools.partial(
  jax.jit, static_argnames=("model", "max_decode_length", "num_beams", "length_penalty", "eos_id")
)
def beam_search(
  model,
  params,
  encoder_tokens,
  max_decode_length: int,
  num_beams: int,
  length_penalty: float = 0.6,
  eos_id: int = EOS_ID,
):
  """int32 [batch, max_decode_length]: each input's best finished output (0 after EOS)."""
  batch = encoder_tokens.shape[0]
  tokens = jnp.repeat(encoder_tokens, num_beams, axis=0)  # [batch * beams, L]
  encoded = model.encode(params, tokens)
  cache = model.init_cache(params, encoded, tokens, max_decode_length)
  neg = jnp.float32(-1e9)
  # Only the first beam is live at the start, so the first step does not pick duplicates.
  scores = jnp.tile(jnp.array([0.0] + [neg] * (num_beams - 1), jnp.float32), (batch, 1))
  outputs = jnp.zeros((batch, num_beams, max_decode_length), jnp.int32)
  done = jnp.zeros((batch, num_beams), bool)
  lengths = jnp.zeros((batch, num_beams), jnp.int32)

  def body(i, state):
    cache, scores, outputs, done, lengths = state
    prev = jnp.where(i == 0, 0, outputs[:, :, jnp.maximum(i - 1, 0)]).reshape(-1)
    logits, cache = model.decode_step(
      params, cache, encoded, tokens, prev[:, None], max_decode_length
    )
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, num_beams, -1)
    vocab = log_probs.shape[-1]
    # A finished beam extends only with padding, at no cost, so it keeps its score and place.
    pad_only = jnp.full((vocab,), neg).at[0].set(0.0)
    log_probs = jnp.where(done[..., None], pad_only, log_probs)
    candidates = (scores[..., None] + log_probs).reshape(batch, -1)
    scores, flat = jax.lax.top_k(candidates, num_beams)
    beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
    pick = lambda x: jnp.take_along_axis(
      x, beam.reshape(batch, num_beams, *([1] * (x.ndim - 2))), axis=1
    )
    outputs = pick(outputs).at[:, :, i].set(token)
    was_done = pick(done)
    lengths = pick(lengths) + (~was_done).astype(jnp.int32)
    done = was_done | (token == eos_id)
    rows = (jnp.arange(batch)[:, None] * num_beams + beam).reshape(-1)
    # Cached keys/values follow their beam; scanned layers stack them behind a layer axis.
    axis = 1 if model.config.scan_layers else 0
    cache = jax.tree.map(lambda c: jnp.take(c, rows, axis=axis) if c.ndim > axis + 1 else c, cache)
    return cache, scores, outputs, done, lengths

  _, scores, outputs, done, lengths = jax.lax.fori_loop(
    0, max_decode_length, body, (cache, scores, outputs, done, lengths)
  )
  penalty = ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** length_penalty
  final = jnp.where(done, scores / penalty, scores / penalty - 1e6)  # unfinished: last resort
  best = jnp.argmax(final, axis=1)
  return jnp.take_along_axis(outputs, best[:, None, None], axis=1)[:, 0]
