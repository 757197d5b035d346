"""Rank-classification scoring by the evaluator's `ChoiceScorer` (the one scorer, used by
`t0jax eval`, the trainer's periodic evaluation and `t0jax predict`): correct sums, one encoder
pass per input, independent of batch size and order, uneven choice counts, bad input refused."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax
import numpy as np
import pytest

from t0jax.evaluate import batching
from t0jax.evaluate.scorer import ChoiceScorer
from t0jax.model import T5Config, Transformer, init_params

# One layer per stack: scoring does not depend on depth, and compiling stays fast.
CFG = T5Config(
  vocab_size=64,
  d_model=32,
  num_heads=2,
  head_dim=8,
  d_ff=48,
  num_layers=1,
  num_decoder_layers=1,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=16,
)


def make_examples(input_lengths, max_choice_tokens, seed=0):
  """Random inputs, each with 1 to 5 choices of 1 to `max_choice_tokens` tokens (EOS included)."""
  rng = np.random.default_rng(seed)
  inputs = [rng.integers(2, 64, n).tolist() for n in input_lengths]
  choices = [
    [
      rng.integers(2, 64, rng.integers(0, max_choice_tokens)).tolist() + [1]
      for _ in range(rng.integers(1, 6))
    ]
    for _ in input_lengths
  ]
  return inputs, choices


@pytest.fixture(scope="module")
def setup():
  # Random values in init_params' tree (traced for shapes only: no compilation).
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: init_params(CFG, jax.random.key(0)))
  params = jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32), shapes)
  # Input lengths span three buckets (8, 16, 24), choice lengths two (8, 16).
  inputs, choices = make_examples((3, 9, 20, 1, 7, 15, 12), max_choice_tokens=10)
  return Transformer(CFG), params, inputs, choices


def score(model, params, inputs, choices, batch_size, **kw):
  return ChoiceScorer(model, params, batch_size=batch_size, per_octave=1, **kw).score(
    inputs, choices
  )


def reference_scores(model, params, inputs, choices):
  """The t-zero way: the input repeated once per choice, every pair through the whole network."""
  pairs = [(tokens, choice) for tokens, options in zip(inputs, choices) for choice in options]
  enc = np.zeros((len(pairs), 32), np.int32)
  targets = np.zeros((len(pairs), 16), np.int32)
  for r, (tokens, choice) in enumerate(pairs):
    enc[r, : len(tokens)], targets[r, : len(choice)] = tokens, choice
  dec_in = np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
  logits = jax.jit(model.apply)({"params": params}, enc, dec_in, targets)
  log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
  flat = [
    sum(log_probs[r, t, c] for t, c in enumerate(choice)) for r, (_, choice) in enumerate(pairs)
  ]
  sizes = np.cumsum([0] + [len(options) for options in choices])
  return [np.array(flat[a:b]) for a, b in zip(sizes[:-1], sizes[1:])]


@pytest.mark.parametrize("pack_choices", [True, False])
def test_scores_equal_per_choice_forward_passes(setup, pack_choices):
  model, params, inputs, choices = setup
  got, _ = score(model, params, inputs, choices, 4, pack_choices=pack_choices)
  for ours, ref in zip(got, reference_scores(model, params, inputs, choices)):
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_examples_with_uneven_numbers_of_choices_share_a_batch(setup):
  model, params, inputs, choices = setup
  assert len({len(c) for c in choices}) > 1  # the fixture really mixes choice counts
  got, _ = score(model, params, inputs, choices, 8)
  assert [s.shape for s in got] == [(len(c),) for c in choices]


def test_scores_do_not_depend_on_batch_size_or_order(setup):
  model, params, _, _ = setup
  # Two input buckets and one choice bucket keep the number of compiled shapes small.
  inputs, choices = make_examples((3, 9, 1, 7, 15, 12, 4, 10), max_choice_tokens=7, seed=1)
  base, _ = score(model, params, inputs, choices, 1)
  for batch_size in (3, 8):
    got, _ = score(model, params, inputs, choices, batch_size)
    for a, b in zip(got, base):
      np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
  order = np.random.default_rng(1).permutation(len(inputs))
  got, _ = score(model, params, [inputs[i] for i in order], [choices[i] for i in order], 3)
  for k, i in enumerate(order):
    np.testing.assert_allclose(got[k], base[i], atol=1e-5, rtol=0)


def test_token_counts_include_eos(setup):
  model, params, inputs, choices = setup
  scores, counts = score(model, params, inputs[:3], choices[:3], 4)
  for options, n, s in zip(choices[:3], counts, scores):
    assert n.tolist() == [len(c) for c in options] and s.shape == (len(options),)


def test_each_input_is_encoded_once_whatever_its_number_of_choices(setup):
  model, params, inputs, choices = setup
  scorer = ChoiceScorer(model, params, batch_size=4, per_octave=1)
  encoded_rows = []
  program = scorer._program

  def recording(model, params, encoder_tokens, **kw):
    encoded_rows.extend(row for row in np.asarray(encoder_tokens).tolist() if any(row))
    return program(model, params, encoder_tokens=encoder_tokens, **kw)

  scorer._program = recording
  scorer.score(inputs, choices)
  # Inputs hold no 0 (padding) tokens, so a row's non-zero tokens are its input.
  assert sorted(tuple(t for t in row if t) for row in encoded_rows) == sorted(map(tuple, inputs))


def test_compiled_shapes_come_from_few_buckets(setup):
  _, _, inputs, choices = setup
  assert [batching.bucket_length(n) for n in (1, 8, 9, 16, 17, 100)] == [8, 8, 16, 16, 24, 112]
  steps = batching.plan_steps(
    [len(t) for t in inputs], [[len(c) for c in cs] for cs in choices], batch_size=4
  )
  assert len({s.signature for s in steps}) <= 4  # 7 examples of 3 input buckets


@pytest.mark.parametrize(
  "inputs,choices,pattern",
  [
    ([[5, 6]], [[[7, 8]]], r"Example 0, choice 0: choice tokens must end with EOS"),
    ([[5, 6]], [[]], "Example 0 has no answer choices"),
    ([[5, 6], [7]], [[[7, 1]]], "2 inputs but 1 choice lists"),
    ([[5, 6], [5, 99]], [[[7, 1]], [[7, 1]]], r"Example 1, input: token id 99 is outside 1\.\.63"),
    ([[5, 6]], [[[7, 64, 1]]], r"Example 0, choice 0: token id 64 is outside"),
    ([[]], [[[7, 1]]], "Example 0 has an empty input"),
  ],
)
def test_bad_examples_are_refused_with_their_index(setup, inputs, choices, pattern):
  model, params, _, _ = setup
  with pytest.raises(ValueError, match=pattern):
    ChoiceScorer(model, params).score(inputs, choices)
