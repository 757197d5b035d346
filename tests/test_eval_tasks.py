"""`evaluate()` on a user's own SeqIO tasks: answer choices as strings, a target outside the
choices, an example without choices, a generative task with its own metric, hosts scoring
their shards, and repeated calls reusing the cached inputs."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

import t0jax.catalog as catalog
from small_models import DEMO_TINY
from t0jax.parallel import hosts
from t0jax.evaluate import EvalDataError, data as eval_data, evaluate, metrics
from t0jax.evaluate.evaluator import prompt_metadata, resolve_tasks
from t0jax.model import Transformer, init_params

tf.config.set_visible_devices([], "GPU")

CFG = DEMO_TINY
PREFIX = "test_eval_tasks_"
COLOURS = ["red", "green", "blue", "yellow"]


def choice_rows(with_empty=False):
  rows = []
  for i in range(6):
    colour = COLOURS[i % 4]
    rows.append(
      {
        "inputs": f"The sky in story {i} was painted {colour}. What colour was it?",
        "targets": colour if i != 4 else "purple",  # 4: the target is no choice
        "answer_choices": COLOURS[: 2 + i % 3]
        if colour in COLOURS[: 2 + i % 3]
        else [colour, "grey"],
      }
    )
  if with_empty:
    rows[2]["answer_choices"] = []
  return rows


def register(name, rows, *, choices=True, metric_fns=()):
  signature = {"inputs": tf.TensorSpec([], tf.string), "targets": tf.TensorSpec([], tf.string)}
  if choices:
    signature["answer_choices"] = tf.TensorSpec([None], tf.string)
  rows = [{k: v for k, v in row.items() if k in signature} for row in rows]

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=signature)

  features = {
    "inputs": seqio.Feature(catalog.DEMO_VOCABULARY, add_eos=False),
    "targets": seqio.Feature(catalog.DEMO_VOCABULARY, add_eos=True),
  }
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
    name,
    seqio.FunctionDataSource(dataset_fn, splits=["validation"]),
    output_features=features,
    metric_fns=list(metric_fns),
    preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
  )


def agreement(targets, predictions):
  """A user's metric: the fraction of predicted choice indices equal to the gold index."""
  return {"agreement": float(np.mean(np.asarray(targets) == np.asarray(predictions)))}


def words_in_prediction(targets, predictions):
  return {"mean_words": float(np.mean([len(p.split()) for p in predictions]))}


@pytest.fixture(scope="module")
def setup():
  register(PREFIX + "colours", choice_rows(), metric_fns=[agreement])
  register(PREFIX + "empty", choice_rows(with_empty=True))
  register(PREFIX + "echo", choice_rows(), choices=False, metric_fns=[words_in_prediction])
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: init_params(CFG, jax.random.key(0)))
  params = jax.tree.map(lambda s: rng.normal(0, 0.4, s.shape).astype(np.float32), shapes)
  yield Transformer(CFG), params
  for name in ("colours", "empty", "echo"):
    seqio.TaskRegistry.remove(PREFIX + name)


def run(setup, name, **kw):
  model, params = setup
  kw.setdefault("batch_size", 8)
  kw.setdefault("buckets_per_octave", 1)  # fewer programs to compile
  return evaluate(model, params, CFG, PREFIX + name, **kw)


def test_a_users_task_with_string_choices_is_ranked_and_its_metric_applied(setup):
  results = run(setup, "colours", per_example=True)
  prompt = results["prompts"][PREFIX + "colours"]
  assert prompt["kind"] == "rank" and prompt["dataset"] == PREFIX + "colours"
  figures = prompt["metrics"]
  assert (figures["num_examples"], figures["num_target_not_in_choices"]) == (6, 1)
  examples = results["examples"][PREFIX + "colours"]
  assert [e["idx"] for e in examples] == list(range(6))  # back in the task's order
  assert examples[4]["answer_idx"] == -1
  scorable = [e for e in examples if e["answer_idx"] >= 0]
  correct = sum(e["prediction"] == e["answer_idx"] for e in scorable)
  assert figures["accuracy"] == pytest.approx(100.0 * correct / 5)  # excluded, not wrong
  # The task's own metric sees every example (it counts the excluded one as a miss).
  assert prompt["task_metrics"]["agreement"] == pytest.approx(correct / 6)


def test_an_example_without_choices_is_an_error_naming_task_and_example(setup):
  with pytest.raises(
    EvalDataError,
    match=rf"task {PREFIX}empty, example idx 2: .*no answer "
    r"choices",
  ):
    run(setup, "empty")


def test_a_task_without_choices_is_decoded_and_scored_with_its_metrics(setup):
  results = run(setup, "echo", task_feature_lengths={"inputs": 64, "targets": 5}, per_example=True)
  prompt = results["prompts"][PREFIX + "echo"]
  assert prompt["kind"] == "generate"
  assert set(prompt["metrics"]) >= {"exact_match", "rougeL", "mean_words"}
  outputs = [e["prediction_text"] for e in results["examples"][PREFIX + "echo"]]
  assert len(outputs) == 6 and all(isinstance(o, str) for o in outputs)
  assert results["datasets"][PREFIX + "echo"]["kind"] == "generate"


def test_hosts_scoring_their_shards_agree_with_one_host(setup, monkeypatch):
  """Two simulated hosts each read and score half the examples; a third process of host 1's
  model-parallel group sends the same records again. Gathered, they equal one host's results."""
  single = run(setup, "colours", per_example=True)
  payloads = []
  for index in (0, 1):
    monkeypatch.setattr(hosts, "data_slice", lambda partitioner=None, i=index: (i, 2))
    monkeypatch.setattr(hosts, "allgather_json", lambda obj: payloads.append(obj) or [obj])
    run(setup, "colours")
  monkeypatch.setattr(hosts, "data_slice", lambda partitioner=None: (0, 2))
  monkeypatch.setattr(hosts, "allgather_json", lambda obj: [obj, payloads[1], payloads[1]])
  gathered = run(setup, "colours", per_example=True)
  key = PREFIX + "colours"
  assert gathered["prompts"][key]["metrics"] == single["prompts"][key]["metrics"]
  for a, b in zip(gathered["examples"][key], single["examples"][key], strict=True):
    assert a["idx"] == b["idx"]
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)


def test_repeated_evaluations_reuse_the_cached_inputs(setup, monkeypatch):
  run(setup, "colours")
  reads = []
  real = eval_data._read
  monkeypatch.setattr(eval_data, "_read", lambda *a, **k: reads.append(a) or real(*a, **k))
  again = run(setup, "colours", calibrate=True)
  assert reads == []
  assert "accuracy_calibrated" in again["prompts"][PREFIX + "colours"]["metrics"]


def test_t0_held_out_prompts_are_grouped_as_t0_reports_them():
  """Catalogue tasks are grouped by dataset + subset + eval split (ANLI's three rounds apart),
  and every held-out dataset of the T0 mixture has its reference figure."""
  meta = [prompt_metadata(t.name) for t in resolve_tasks("t0_eval_score_eval")]
  datasets = {m["dataset"] for m in meta}
  assert datasets == {
    "super_glue/rte",
    "super_glue/cb",
    "anli_r1",
    "anli_r2",
    "anli_r3",
    "super_glue/wsc.fixed",
    "winogrande/winogrande_xl",
    "super_glue/copa",
    "hellaswag",
    "story_cloze/2016",
    "super_glue/wic",
  }
  assert datasets <= set(metrics.T0_REFERENCE)
  assert all(m["original_task"] for m in meta)
  assert {m["prompt_collection"] for m in meta} == {"t0jax"}  # the catalogue's own prompts
  assert prompt_metadata("my_own_task") == {
    "dataset": "my_own_task",
    "prompt": "my_own_task",
    "original_task": True,
    "held_out": False,
    "prompt_collection": "other",
  }


def test_all_prompts_adds_a_datasets_other_prompts_on_the_same_split():
  infos = [
    i
    for i in catalog.all_task_infos()
    if i.score_eval and i.eval_split and not i.prompt.original_task
  ]
  info = infos[0]
  original = next(
    i
    for i in catalog.all_task_infos()
    if i.score_eval
    and i.dataset.key == info.dataset.key
    and i.prompt.original_task
    and i.split_suffix == info.split_suffix
  )
  names = [t.name for t in resolve_tasks(original.name, all_prompts=True)]
  assert original.name in names and info.name in names
  assert not prompt_metadata(info.name)["original_task"]
  assert [t.name for t in resolve_tasks(original.name)] == [original.name]


def test_token_ids_outside_the_checkpoints_vocabulary_are_named():
  data = eval_data.TaskData(
    "some_task",
    "rank",
    [(5, 0, 0)],
    [[3, 4]],
    ["x"],
    ["a"],
    [{}],
    choices=[[[7, 1], [900, 1]]],
    choice_texts=[["a", "b"]],
    answer_idx=[0],
  )
  with pytest.raises(
    EvalDataError,
    match=r"task some_task, example idx 5, choice 1: token id "
    r"900 is outside 1\.\.895",
  ):
    eval_data.check_token_ids(data, 896)
  eval_data.check_token_ids(data, 1024)  # fits a larger embedding


def test_the_seqio_task_metric_counts_examples_as_the_evaluator_does():
  """The catalogue tasks' seqio metric and `t0jax eval` agree: a target outside the choices
  (answer_idx -1) is left out of the accuracy and counted, not scored as wrong."""
  from t0jax.data import rank_classification_accuracy

  gold = np.array([0, 1, -1, 2, -1])
  predicted = np.array([0, 0, 1, 2, 0])
  scores = [np.eye(3)[p] for p in predicted]
  expected = metrics.rank_metrics(scores, [np.ones(3)] * 5, [np.ones(3)] * 5, gold)
  got = rank_classification_accuracy(gold, predicted)
  assert got["accuracy"] == pytest.approx(expected["accuracy"]) == pytest.approx(200 / 3)
  assert got["num_target_not_in_choices"] == expected["num_target_not_in_choices"] == 2
  assert np.isnan(rank_classification_accuracy([-1], [0])["accuracy"])
