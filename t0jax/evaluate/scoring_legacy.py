"""Rank classification: the log-likelihood of every answer choice given its input.

T0 scores a choice by the sum of the log-probabilities of its tokens (EOS included) given the
prompted input, and predicts the best-scoring choice. Here each input is encoded once and its
encodings are gathered for all of its choices, which are decoded together; examples may have
different numbers of choices.

Scores must not depend on batch size, padding or order. Examples are therefore encoded at the
padded length of their own length bucket (never a batch-dependent one), batch shapes come from a
few powers of two (few jit compilations), and per-token log-probabilities are summed on the host
in float64 over exactly the choice's tokens.
"""
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from t0jax.model import T5Config

EOS_ID = 1
_MIN_LENGTH = 8


def bucket_length(n: int, minimum: int = _MIN_LENGTH) -> int:
  """The padded length for `n` tokens: the next power of two, at least `minimum`."""
  return max(minimum, 1 << max(0, n - 1).bit_length())


def _batch_rows(n: int, batch_size: int) -> int:
  return min(bucket_length(n, 1), batch_size)


@functools.partial(jax.jit, static_argnames=("model",))
def _encode(model, params, encoder_tokens):
  return model.apply({"params": params}, encoder_tokens, method=type(model).encode)


@functools.partial(jax.jit, static_argnames=("model",))
def _choice_token_log_probs(model, params, encoded, encoder_tokens, decoder_inputs,
                            decoder_targets):
  """log p(target token) [rows, length]; row r decodes against encodings `encoded[r]`."""
  logits = model.apply({"params": params}, encoded, encoder_tokens, decoder_inputs,
                       decoder_targets, method=type(model).decode)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_probs, decoder_targets[..., None], axis=-1)[..., 0]
  return jnp.where(decoder_targets > 0, picked, 0.0)


def _check(cfg: T5Config, inputs, choices) -> None:
  if len(inputs) != len(choices):
    raise ValueError(f"score_choices got {len(inputs)} inputs but {len(choices)} choice lists.")
  for i, (tokens, options) in enumerate(zip(inputs, choices)):
    if len(tokens) == 0:
      raise ValueError(f"Example {i} has an empty input; every input needs at least one token.")
    if len(options) == 0:
      raise ValueError(f"Example {i} has no answer choices; give at least one.")
    for j, choice in enumerate(options):
      if len(choice) == 0 or choice[-1] != EOS_ID:
        raise ValueError(f"Example {i}, choice {j}: choice tokens must end with EOS (id {EOS_ID}); "
                         f"got {list(choice)[-5:]}.")
    for name, seq in [("input", tokens)] + [(f"choice {j}", c) for j, c in enumerate(options)]:
      bad = [t for t in seq if not 0 < t < cfg.vocab_size]
      if bad:
        raise ValueError(f"Example {i}, {name}: token id {bad[0]} is outside 1..{cfg.vocab_size - 1} "
                         "(the model's vocabulary); was it tokenised with another vocabulary?")


def _pad(rows: Sequence[Sequence[int]], num_rows: int, length: int) -> np.ndarray:
  out = np.zeros((num_rows, length), np.int32)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return out


def choice_log_likelihoods(model, params, cfg: T5Config, inputs: Sequence[Sequence[int]],
                           choices: Sequence[Sequence[Sequence[int]]], *, batch_size: int = 16):
  """(scores, token_counts): per example, float64 [num_choices] summed log-probabilities and
  int [num_choices] scored tokens per choice (EOS included), for per-token normalisation.

  `inputs` are token ids without EOS (as T0 was trained); every choice ends with EOS (id 1).
  `batch_size` bounds both the inputs encoded and the choice rows decoded per step.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
  _check(cfg, inputs, choices)
  scores = [np.zeros(len(c), np.float64) for c in choices]
  groups: dict = {}
  for i, tokens in enumerate(inputs):
    groups.setdefault(bucket_length(len(tokens)), []).append(i)
  for input_length, members in sorted(groups.items()):
    # Similar choice lengths in a step keep decoder padding small.
    members.sort(key=lambda i: max(len(c) for c in choices[i]))
    for start in range(0, len(members), batch_size):
      batch = members[start:start + batch_size]
      encoder_tokens = _pad([inputs[i] for i in batch], _batch_rows(len(batch), batch_size),
                            input_length)
      encoded = _encode(model, params, encoder_tokens)
      rows = [(slot, i, j) for slot, i in enumerate(batch) for j in range(len(choices[i]))]
      for chunk_start in range(0, len(rows), batch_size):
        chunk = rows[chunk_start:chunk_start + batch_size]
        targets = [choices[i][j] for _, i, j in chunk]
        num_rows = _batch_rows(len(chunk), batch_size)
        length = bucket_length(max(len(t) for t in targets))
        decoder_targets = _pad(targets, num_rows, length)
        # Teacher forcing: the decoder sees the targets shifted right, 0 as the start token.
        decoder_inputs = np.zeros_like(decoder_targets)
        decoder_inputs[:, 1:] = decoder_targets[:, :-1]
        slots = np.zeros(num_rows, np.int32)
        slots[:len(chunk)] = [slot for slot, _, _ in chunk]
        # Gathered outside the jitted decoder, so its shapes do not depend on the encoder batch.
        token_log_probs = np.asarray(_choice_token_log_probs(
            model, params, encoded[slots], encoder_tokens[slots], decoder_inputs, decoder_targets))
        for r, (_, i, j) in enumerate(chunk):
          scores[i][j] = token_log_probs[r, :len(choices[i][j])].astype(np.float64).sum()
  counts = [np.array([len(c) for c in options], np.int64) for options in choices]
  return scores, counts


def score_choices(model, params, cfg: T5Config, inputs: Sequence[Sequence[int]],
                  choices: Sequence[Sequence[Sequence[int]]], *, batch_size: int = 16):
  """Per example, float64 [num_choices]: the summed log-probability of each choice's tokens
  (EOS included) given the input. The T0 prediction is the argmax."""
  return choice_log_likelihoods(model, params, cfg, inputs, choices, batch_size=batch_size)[0]
