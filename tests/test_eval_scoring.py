"""Packed rank-classification scoring: equal to transformers with the input repeated per choice,
independent of batch size, padding, order and mesh, one encoder pass per input.

Tiny random-weight models; nothing downloads.
"""

import json
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax
import numpy as np
import pytest

from t0jax.parallel import hosts
from t0jax.evaluate import batching
from t0jax.evaluate.generate import Generator
from t0jax.evaluate.scorer import ChoiceScorer
from t0jax.model import T5Config, Transformer, init_params
from t0jax.parallel.partitioning import Partitioner

# heads * head_dim != d_model and unequal depths catch layout slips; inputs (up to 40 tokens)
# run past relative_attention_max_distance (16).
CFG = T5Config(
  vocab_size=64,
  d_model=32,
  num_heads=2,
  head_dim=12,
  d_ff=48,
  num_layers=2,
  num_decoder_layers=1,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=16,
)


def random_params(cfg, seed=0):
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  return jax.tree.map(lambda s: rng.normal(0, 0.4, s.shape).astype(np.float32), shapes)


def make_examples(input_lengths, seed=0, max_choices=5, max_choice_tokens=7):
  """Random inputs; each has 1..max_choices choices of 0..max_choice_tokens-1 tokens + EOS."""
  rng = np.random.default_rng(seed)
  inputs = [rng.integers(2, 64, n).tolist() for n in input_lengths]
  choices = [
    [
      rng.integers(2, 64, rng.integers(0, max_choice_tokens)).tolist() + [1]
      for _ in range(rng.integers(1, max_choices + 1))
    ]
    for _ in input_lengths
  ]
  return inputs, choices


@pytest.fixture(scope="module")
def model_and_params():
  return Transformer(CFG), random_params(CFG)


@pytest.fixture(scope="module")
def examples():
  # One input bucket (32) and short choices keep the number of compiled programs small.
  return make_examples((17, 30, 21, 32, 25, 19, 28, 23), seed=1, max_choices=4, max_choice_tokens=5)


def score(model_and_params, inputs, choices, **kw):
  model, params = model_and_params
  kw.setdefault("per_octave", 1)
  return ChoiceScorer(model, params, **kw).score(inputs, choices)[0]


def test_scores_equal_transformers_log_probs_with_the_input_repeated_per_choice(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from t0jax.checkpoints import save_hf_checkpoint

  params = random_params(CFG, seed=3)
  hf = transformers.T5ForConditionalGeneration.from_pretrained(
    save_hf_checkpoint(params, CFG, tmp_path / "hf")
  ).eval()
  inputs, choices = make_examples((40, 35, 12, 9), seed=2, max_choices=4, max_choice_tokens=9)
  ours = ChoiceScorer(Transformer(CFG), params, batch_size=4, per_octave=1).score(inputs, choices)[
    0
  ]
  for i, (tokens, options) in enumerate(zip(inputs, choices)):
    # t-zero's way: one row per choice, the input repeated in each.
    ids = torch.tensor([tokens] * len(options))
    labels = torch.zeros((len(options), max(map(len, options))), dtype=torch.long)
    for j, c in enumerate(options):
      labels[j, : len(c)] = torch.tensor(c)
    with torch.no_grad():
      logits = hf(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).logits
    log_probs = torch.log_softmax(logits.double(), -1).gather(-1, labels[..., None])[..., 0]
    reference = (log_probs * (labels > 0)).sum(-1).numpy()
    np.testing.assert_allclose(ours[i], reference, atol=1e-4, rtol=0)


def test_scores_do_not_depend_on_batch_size_padding_order_or_packing(model_and_params, examples):
  inputs, choices = examples
  base = score(model_and_params, inputs, choices, batch_size=4)
  variants = [
    dict(batch_size=8, per_octave=4),  # other batches and padded lengths
    dict(batch_size=2, pack_choices=False),
  ]  # a row per choice, several chunks
  for kw in variants:
    for a, b in zip(score(model_and_params, inputs, choices, **kw), base):
      np.testing.assert_allclose(a, b, atol=1e-4, rtol=0, err_msg=str(kw))
  order = np.random.default_rng(0).permutation(len(inputs))
  shuffled = score(
    model_and_params, [inputs[i] for i in order], [choices[i] for i in order], batch_size=4
  )
  for k, i in enumerate(order):
    np.testing.assert_allclose(shuffled[k], base[i], atol=1e-4, rtol=0)


def test_scores_do_not_depend_on_the_mesh(model_and_params, examples):
  from t0jax.model import logical_axes

  model, params = model_and_params
  inputs, choices = examples
  base = score(model_and_params, inputs, choices, batch_size=8)
  for num_partitions, devices in ((1, 8), (2, 4)):
    part = Partitioner(num_partitions, devices=jax.devices()[:devices])
    sharded = jax.device_put(params, part.shardings(logical_axes(CFG)))
    got = ChoiceScorer(model, sharded, batch_size=8, partitioner=part, per_octave=1).score(
      inputs, choices
    )[0]
    for a, b in zip(got, base):
      np.testing.assert_allclose(a, b, atol=1e-4, rtol=0, err_msg=f"mesh {part.mesh.shape}")


def test_each_input_is_encoded_exactly_once(model_and_params, examples):
  model, params = model_and_params
  inputs, choices = examples
  scorer = ChoiceScorer(model, params, batch_size=4, per_octave=1)
  encoded = []
  program = scorer._program

  def recording(model, params, encoder_tokens, **kw):
    encoded.extend(tuple(t for t in row if t) for row in np.asarray(encoder_tokens) if row.any())
    return program(model, params, encoder_tokens=encoder_tokens, **kw)

  scorer._program = recording
  scorer.score(inputs, choices)
  assert sorted(encoded) == sorted(map(tuple, inputs))  # inputs hold no padding id 0


def test_compiled_step_costs_far_less_than_repeating_the_input_per_choice(model_and_params):
  """FLOPs of one scoring step for 8 examples x 4 choices (the encoder runs on 8 rows) against
  the whole model on the 32 (input, choice) rows t-zero builds."""
  from t0jax.evaluate import scorer as scorer_module

  model, params = model_and_params
  inputs, choices = make_examples([64] * 8, seed=4, max_choices=1)
  choices = [[c[0], c[0], c[0], c[0]] for c in choices]
  (step,) = batching.plan_steps([64] * 8, [[len(x) for x in c] for c in choices], batch_size=8)
  arrays = scorer_module._decoder_arrays(step, choices, 0)
  enc = np.array(inputs, np.int32)
  ours = (
    jax.jit(scorer_module._step, static_argnames=("model", "packed", "num_chunks", "num_hosts"))
    .lower(model, params, enc, **arrays, packed=True, num_chunks=1, num_hosts=1)
    .compile()
  )
  repeated = np.repeat(enc, 4, axis=0)
  targets = np.zeros((32, 8), np.int32)
  theirs = jax.jit(model.apply).lower({"params": params}, repeated, targets, targets).compile()
  flops = lambda c: c.cost_analysis()["flops"]
  assert flops(ours) < 0.5 * flops(theirs)


def test_plans_cover_every_example_once_within_batch_limits():
  inputs, choices = make_examples([3, 70, 9, 200, 33, 5, 64, 65, 12, 1], seed=5, max_choices=9)
  lengths = [[len(c) for c in cs] for cs in choices]
  steps = batching.plan_steps([len(t) for t in inputs], lengths, batch_size=3, max_row_tokens=10)
  assert sorted(i for s in steps for i in s.examples) == list(range(len(inputs)))
  for s in steps:
    assert len(s.examples) <= s.num_example_rows <= 3
    assert all(len(chunk) <= s.num_rows <= 3 for chunk in s.chunks)
    assert all(len(inputs[i]) <= s.input_length for i in s.examples)
    rows = [r for chunk in s.chunks for r in chunk]
    assert all(r.tokens <= s.row_length for r in rows)
    for i in s.examples:  # every choice of every example in exactly one row
      assert sorted(j for r in rows if r.example == i for j in r.choices) == list(
        range(len(choices[i]))
      )


def test_length_buckets_keep_padding_under_a_quarter():
  assert [batching.bucket_length(n) for n in (1, 8, 9, 64, 65, 129, 200)] == [
    8,
    8,
    16,
    64,
    80,
    160,
    224,
  ]
  assert all(batching.bucket_length(n) < 1.25 * n + 8 for n in range(1, 3000))
  assert batching.pack_choices([3, 3, 5, 2], max_row_tokens=6) == [(0, 1), (2,), (3,)]
  assert batching.pack_choices([3, 3], max_row_tokens=0) == [(0,), (1,)]


def test_hosts_run_the_same_program_sequence_whatever_their_share():
  """Two simulated hosts with different amounts of work agree on one sequence of step shapes;
  the one with less work fills it with empty steps."""
  few = batching.plan_steps([5, 30], [[2, 3], [4]], batch_size=4)
  many = batching.plan_steps([5, 6, 7, 30, 31, 100, 4], [[2]] * 7, batch_size=4)
  # Signatures travel between hosts as JSON (nested lists).
  everyone = [json.loads(json.dumps([s.signature for s in p])) for p in (few, many)]
  aligned = [batching.align_plans(p, everyone) for p in (few, many)]
  assert [s.signature for s in aligned[0]] == [s.signature for s in aligned[1]]
  assert sorted(i for s in aligned[0] for i in s.examples) == [0, 1]
  assert sorted(i for s in aligned[1] for i in s.examples) == list(range(7))


def test_allgather_json_returns_every_hosts_value_in_order():
  payloads = [{"host": 0, "text": "ä" * 3}, {"host": 1, "records": [1, 2, 3] * 5}]
  calls = iter(range(4))

  def fake_allgather(local):  # both hosts' arrays, as jax's process_allgather stacks them
    n = next(calls)
    encoded = [np.frombuffer(json.dumps(p).encode(), np.uint8) for p in payloads]
    if n % 2 == 0:
      return np.array([[e.size] for e in encoded])
    width = max(e.size for e in encoded)
    return np.stack([np.pad(e, (0, width - e.size)) for e in encoded])

  assert hosts.allgather_json(payloads[0], allgather=fake_allgather) == payloads


def test_beam_search_finds_outputs_scoring_no_worse_than_greedy(model_and_params):
  model, params = model_and_params
  inputs, _ = make_examples((6, 11, 3, 14), seed=7)
  greedy = Generator(model, params, batch_size=4, per_octave=1).generate(inputs, 6)
  beams = Generator(
    model, params, batch_size=4, num_beams=3, length_penalty=0.0, per_octave=1
  ).generate(inputs, 6)
  scorer = ChoiceScorer(model, params, batch_size=4, per_octave=1)
  finished = [i for i, (g, b) in enumerate(zip(greedy, beams)) if len(g) < 6 and len(b) < 6]
  assert finished, "pick inputs whose outputs end within the decode length"
  pairs = scorer.score(
    [inputs[i] for i in finished], [[greedy[i] + [1], beams[i] + [1]] for i in finished]
  )[0]
  for g, b in pairs:
    assert b >= g - 1e-4
