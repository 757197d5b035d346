"""Greedy decoding with the key/value cache."""
import functools

import jax
import jax.numpy as jnp


def init_cache(model, params, encoded, encoder_input_tokens, max_decode_length: int):
  """Allocate the decoder's key/value cache for `max_decode_length` steps."""
  batch = encoder_input_tokens.shape[0]
  dummy = jnp.zeros((batch, max_decode_length), jnp.int32)
  _, variables = model.apply({"params": params}, encoded, encoder_input_tokens, dummy, dummy,
                             decode=True, max_decode_length=max_decode_length,
                             mutable=["cache"], method=type(model).decode)
  return variables["cache"]


def decode_step(model, params, cache, encoded, encoder_input_tokens, tokens,
                max_decode_length: int):
  """Logits [batch, vocab] for the next position, and the updated cache."""
  logits, variables = model.apply({"params": params, "cache": cache}, encoded,
                                  encoder_input_tokens, tokens, decode=True,
                                  max_decode_length=max_decode_length, mutable=["cache"],
                                  method=type(model).decode)
  return logits[:, -1], variables["cache"]


@functools.partial(jax.jit, static_argnames=("model", "max_decode_length", "eos_id"))
def greedy_decode(model, params, encoder_input_tokens, max_decode_length: int, eos_id: int = 1):
  """Greedy decoding: int32 [batch, max_decode_length]; positions after EOS are 0 (padding)."""
  encoded = model.apply({"params": params}, encoder_input_tokens, method=type(model).encode)
  cache = init_cache(model, params, encoded, encoder_input_tokens, max_decode_length)
  batch = encoder_input_tokens.shape[0]

  def body(state):
    i, cache, prev, out, done = state
    logits, cache = decode_step(model, params, cache, encoded, encoder_input_tokens,
                                prev[:, None], max_decode_length)
    nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    nxt = jnp.where(done, 0, nxt)
    out = out.at[:, i].set(nxt)
    return i + 1, cache, nxt, out, done | (nxt == eos_id)

  def cond(state):
    i, _, _, _, done = state
    return (i < max_decode_length) & ~jnp.all(done)

  state = (jnp.int32(0), cache, jnp.zeros((batch,), jnp.int32),
           jnp.zeros((batch, max_decode_length), jnp.int32), jnp.zeros((batch,), bool))
  return jax.lax.while_loop(cond, body, state)[3]
