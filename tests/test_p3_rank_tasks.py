"""T5-style rank-classification tasks (one row per answer choice with `idx` = [example, choice]
and `is_correct`, as t5's `rank_classification` preprocessor, t-zero's and P3's `_score_eval`
tasks make them) are recognised by the evaluator, grouped back per example and scored equal to
the same data in t0jax's format (one row per example with `answer_choices`); a task the
evaluator cannot score is an error naming it, never a silent generative decode."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest
import seqio
import tensorflow as tf

import t0jax.catalog as catalog
from t0jax.evaluate import EvalDataError, data as eval_data, evaluate

from test_p3_data import CFG, model  # noqa: F401 - the tiny random model fixture

PREFIX = "test_p3_rank_tasks_"
ANIMALS = ["cat", "dog", "horse", "fish", "bird"]


def examples():
  """Eight examples with 2 to 5 choices; example 5's gold answer is among no choice."""
  out = []
  for i in range(8):
    choices = ANIMALS[: 2 + i % 4]
    gold = choices[i % len(choices)] if i != 5 else "snake"
    out.append(
      {
        "inputs": f"Story {i}: the pet next door barks or purrs. Which animal is it?",
        "targets": gold,
        "answer_choices": choices,
      }
    )
  return out


def t5_rows(exs, *, idx=True):
  """What t5's rank_classification preprocessor makes of `exs`: one row per choice."""
  rows = []
  for i, ex in enumerate(exs):
    for j, choice in enumerate(ex["answer_choices"]):
      row = {
        "inputs": ex["inputs"],
        "targets": choice,
        "is_correct": choice == ex["targets"],
        "weight": 1.0,
      }
      if idx:
        row["idx"] = [i, j]
      rows.append(row)
  return rows


def _spec(value):
  if isinstance(value, list):
    return tf.TensorSpec([None], tf.int32 if isinstance(value[0], int) else tf.string)
  kinds = {bool: tf.bool, float: tf.float32, int: tf.int32}
  return tf.TensorSpec([], kinds.get(type(value), tf.string))


def register(name, rows, *, eos_after_trim=True, feature_keys=("inputs", "targets")):
  signature = {k: _spec(v) for k, v in rows[0].items()}

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=signature)

  features = {
    k: seqio.Feature(catalog.DEMO_VOCABULARY, add_eos=k == "targets") for k in feature_keys
  }
  steps = [seqio.preprocessors.tokenize]
  if eos_after_trim:
    steps.append(seqio.preprocessors.append_eos_after_trim)
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
    name,
    seqio.FunctionDataSource(dataset_fn, splits=["validation"]),
    output_features=features,
    preprocessors=steps,
  )


@pytest.fixture(scope="module")
def tasks():
  exs = examples()
  names = {"choices": PREFIX + "choices", "rows": PREFIX + "rows"}
  register(names["choices"], exs)
  register(names["rows"], t5_rows(exs))
  yield names
  for name in names.values():
    seqio.TaskRegistry.remove(name)
  eval_data.clear_cache()


def test_t5_style_rows_are_grouped_into_one_example_per_idx(tasks):
  data = eval_data.load_task(seqio.TaskRegistry.get(tasks["rows"]))
  exs = examples()
  assert data.kind == "rank" and data.from_rows and len(data) == len(exs)
  assert [k[0] for k in data.keys] == list(range(len(exs)))
  assert data.choice_texts == [ex["answer_choices"] for ex in exs]
  assert data.answer_idx == [
    ex["answer_choices"].index(ex["targets"]) if ex["targets"] in ex["answer_choices"] else -1
    for ex in exs
  ]


def test_a_t5_style_rank_task_evaluates_equal_to_the_same_data_in_t0jax_format(tasks, model):
  net, params = model
  kw = dict(batch_size=3, per_example=True)
  ours = evaluate(net, params, CFG, tasks["choices"], **kw)
  t5 = evaluate(net, params, CFG, tasks["rows"], **kw)
  a, b = ours["prompts"][tasks["choices"]], t5["prompts"][tasks["rows"]]
  assert b["kind"] == "rank"
  for key in ("accuracy", "num_examples", "num_target_not_in_choices"):
    assert b["metrics"].get(key) == a["metrics"].get(key), key
  ex_a, ex_b = ours["examples"][tasks["choices"]], t5["examples"][tasks["rows"]]
  assert [e["idx"] for e in ex_b] == [e["idx"] for e in ex_a]
  assert [e["prediction"] for e in ex_b] == [e["prediction"] for e in ex_a]
  for e_b, e_a in zip(ex_b, ex_a):
    np.testing.assert_allclose(e_b["scores"], e_a["scores"], rtol=1e-6)


def test_hosts_keep_whole_examples_of_a_t5_style_task(tasks):
  """Rows of one example are never split between hosts: each host takes every n-th example."""
  task = seqio.TaskRegistry.get(tasks["rows"])
  parts = [eval_data.load_task(task, host=h, hosts=3) for h in range(3)]
  assert sorted(k[0] for p in parts for k in p.keys) == list(range(len(examples())))
  whole = eval_data.load_task(task)
  for p in parts:
    for k, choices in zip(p.keys, p.choices):
      assert choices == whole.choices[k[0]]


def test_max_examples_counts_examples_not_rows(tasks):
  data = eval_data.load_task(seqio.TaskRegistry.get(tasks["rows"]), max_examples=3)
  assert [k[0] for k in data.keys] == [0, 1, 2]
  assert [len(c) for c in data.choices] == [2, 3, 4]


def test_rows_with_is_correct_but_no_example_index_are_an_error_naming_the_task(model):
  name = PREFIX + "no_idx"
  register(name, t5_rows(examples(), idx=False))
  net, params = model
  try:
    with pytest.raises(EvalDataError, match=f"task {name}: it has `is_correct`.*not `idx`"):
      evaluate(net, params, CFG, name, batch_size=2)
  finally:
    seqio.TaskRegistry.remove(name)


def test_a_task_with_neither_choices_nor_targets_is_an_error_naming_it(model):
  name = PREFIX + "inputs_only"
  register(name, [{"inputs": "just a question"}], eos_after_trim=False, feature_keys=("inputs",))
  net, params = model
  try:
    with pytest.raises(
      EvalDataError, match=f"task {name}: its examples have neither answer choices nor `targets`"
    ):
      evaluate(net, params, CFG, name, batch_size=2)
  finally:
    seqio.TaskRegistry.remove(name)


def test_task_kinds_follow_the_features():
  spec = lambda **kw: {k: tf.TensorSpec(s, tf.int32) for k, s in kw.items()}  # noqa: E731
  assert (
    eval_data.task_kind("t", spec(inputs=[None], targets=[None], idx=[2], is_correct=[])) == "rows"
  )
  assert eval_data.task_kind("t", spec(inputs=[None], choices=[None, None])) == "rank"
  assert eval_data.task_kind("t", spec(inputs=[None], targets=[None])) == "generate"
  with pytest.raises(EvalDataError, match="task t: its examples have no 'inputs'"):
    eval_data.task_kind("t", spec(targets=[None]))
