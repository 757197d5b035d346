"""P3 (bigscience/P3, T0's prompted and tokenized data) read from a local copy in both of its
layouts: rows equal the live tasks' rows, a mixture trains on P3 without rendering a prompt,
`_score_eval` rows (one per choice) evaluate equal to the live score-eval task, and a missing task
or a wrong file is a one-line error naming it.

The P3 trees are written here, P3's way: the demo tasks' own processed examples (token ids of the
demo vocabulary) as parquet files (pyarrow) and as SeqIO caches (TFRecords of tf.train.Example,
info/stats JSON), `_score_eval` twins as one row per answer choice."""

import json
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import gin
import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import seqio
import tensorflow as tf

import t0jax.catalog as catalog
from small_models import DEMO_TINY
from t0jax.data import p3, settings, source
from t0jax.evaluate import data as eval_data, evaluate
from t0jax.model import Transformer, init_params
from t0jax.train import trainer

TRAIN_TASKS = ["demo_reviews_tone", "demo_news_topic_label"]
TWIN = "demo_story_complete_the_sentence_score_eval"
MIXTURE = "test_p3_data_mixture"
CFG = DEMO_TINY
N_TRAIN, N_EVAL = 40, 12


def live_rows(name, split, n):
  task = seqio.TaskRegistry.get(name)
  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, use_cached=False)
  return list(ds.take(n).as_numpy_iterator())


def _text(v):
  return v.decode() if isinstance(v, bytes) else str(v)


def p3_train_rows(rows):
  return [
    {
      "inputs": [int(t) for t in r["inputs"]],
      "targets": [int(t) for t in r["targets"]],
      "inputs_pretokenized": _text(r["inputs_pretokenized"]),
      "targets_pretokenized": _text(r["targets_pretokenized"]),
    }
    for r in rows
  ]


def p3_score_eval_rows(rows):
  """One row per answer choice, as P3's `_score_eval` subsets hold them."""
  out = []
  for r in rows:
    texts = [_text(t) for t in r["choices_pretokenized"]]
    for j, choice in enumerate(r["choices"]):
      out.append(
        {
          "inputs": [int(t) for t in r["inputs"]],
          "targets": [int(t) for t in choice],
          "inputs_pretokenized": _text(r["inputs_pretokenized"]),
          "targets_pretokenized": texts[j],
          "answer_choices": texts,
          "idx": [int(r["idx"]), j],
          "is_correct": j == int(r["answer_idx"]),
          "weight": 1.0,
        }
      )
  return out


P3_TYPES = {
  "inputs": pa.list_(pa.int32()),
  "targets": pa.list_(pa.int32()),
  "inputs_pretokenized": pa.string(),
  "targets_pretokenized": pa.string(),
  "answer_choices": pa.list_(pa.string()),
  "idx": pa.list_(pa.int32()),
  "is_correct": pa.bool_(),
  "weight": pa.float32(),
}


def write_parquet(root, task, split, rows):
  folder = os.path.join(root, task)
  os.makedirs(folder, exist_ok=True)
  schema = pa.schema([(k, P3_TYPES[k]) for k in rows[0]])
  table = pa.Table.from_pylist(rows, schema=schema)
  # Small row groups, so sharding and shuffling cross row-group boundaries.
  pq.write_table(table, os.path.join(folder, f"{split}-00000-of-00001.parquet"), row_group_size=7)


def write_tfrecord(root, task, split, rows):
  """P3's original layout: `data/<task>/` as a SeqIO cache (without COMPLETED, as in P3)."""
  folder = os.path.join(root, "data", task)
  os.makedirs(folder, exist_ok=True)
  with tf.io.TFRecordWriter(os.path.join(folder, f"{split}.tfrecord-00000-of-00001")) as w:
    for r in rows:
      # int64, as TF Examples store ints and bools (today's protobuf refuses Python bools).
      ex = {
        k: np.asarray(v, np.int64)
        if k in ("inputs", "targets", "idx", "is_correct") and not isinstance(v, str)
        else v
        for k, v in r.items()
      }
      w.write(seqio.utils.dict_to_tfexample(ex).SerializeToString())
  dtypes = {
    "inputs": "int32",
    "targets": "int32",
    "idx": "int32",
    "is_correct": "bool",
    "weight": "float32",
  }
  features = {
    k: {
      "shape": [None] if isinstance(v, list) else [],
      "dtype": "string" if isinstance(v, str) else dtypes.get(k, "string"),
    }
    for k, v in rows[0].items()
  }
  with open(os.path.join(folder, f"info.{split}.json"), "w") as f:
    json.dump({"num_shards": 1, "features": features, "seqio_version": "0.0.6"}, f)
  with open(os.path.join(folder, f"stats.{split}.json"), "w") as f:
    json.dump({"examples": len(rows), "inputs_tokens": 1, "targets_tokens": 1}, f)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
  """The same P3 tasks in today's layout and in the original one."""
  rows = {t: p3_train_rows(live_rows(t, "train", N_TRAIN)) for t in TRAIN_TASKS}
  rows[TWIN] = p3_score_eval_rows(live_rows(TWIN, "validation", N_EVAL))
  out = {}
  for layout, write in (("parquet", write_parquet), ("tfrecord", write_tfrecord)):
    root = str(tmp_path_factory.mktemp(f"p3_{layout}"))
    for task in TRAIN_TASKS:
      write(root, task, "train", rows[task])
    write(root, TWIN, "validation", rows[TWIN])
    out[layout] = root
  seqio.MixtureRegistry.remove(MIXTURE)
  seqio.MixtureRegistry.add(MIXTURE, [(t, 1.0) for t in TRAIN_TASKS])
  yield out, rows
  seqio.MixtureRegistry.remove(MIXTURE)


@pytest.fixture
def use_p3():
  """Set the P3 dir for one test; the catalogue's own tasks come back afterwards."""

  def set_dir(path):
    settings.set_p3_dir(path)

  yield set_dir
  settings.set_p3_dir(None)
  catalog.get_task_or_mixture(TWIN)  # looking up without a P3 dir restores the catalogue
  eval_data.clear_cache()


def read(task, split, **kw):
  ds = task.get_dataset(sequence_length=kw.pop("lengths", None), split=split, shuffle=False, **kw)
  return list(ds.as_numpy_iterator())


@pytest.mark.parametrize("layout", ["parquet", "tfrecord"])
def test_a_p3_task_reads_the_rows_p3_holds_without_rendering(trees, use_p3, layout, monkeypatch):
  roots, rows = trees
  use_p3(roots[layout])
  monkeypatch.setattr(source, "render_examples", _no_rendering)
  task = catalog.get_task_or_mixture("demo_reviews_tone")
  assert isinstance(task.source, p3.P3ParquetSource if layout == "parquet" else p3.P3CacheSource)
  got = read(task, "train")
  assert [list(g["inputs"]) for g in got] == [r["inputs"] for r in rows["demo_reviews_tone"]]
  assert [list(g["targets"]) for g in got] == [r["targets"] for r in rows["demo_reviews_tone"]]
  assert got[0]["targets"][-1] == 1  # P3's targets carry EOS; none is added twice


def test_p3_rows_cut_to_the_feature_lengths_keep_their_eos(trees, use_p3):
  roots, rows = trees
  use_p3(roots["parquet"])
  got = read(
    catalog.get_task_or_mixture("demo_reviews_tone"), "train", lengths={"inputs": 5, "targets": 2}
  )
  for g, r in zip(got, rows["demo_reviews_tone"]):
    assert list(g["inputs"]) == r["inputs"][:5]
    assert list(g["targets"]) == (
      r["targets"] if len(r["targets"]) <= 2 else r["targets"][:1] + [1]
    )


def test_parquet_shards_cover_every_row_once_whatever_the_row_groups(trees, use_p3):
  roots, rows = trees
  use_p3(roots["parquet"])
  src = catalog.get_task_or_mixture("demo_reviews_tone").source
  seen = []
  for k in range(3):
    ds = src.get_dataset("train", shuffle=True, seed=5, shard_info=seqio.ShardInfo(k, 3))
    seen += [tuple(r["inputs"]) for r in ds.as_numpy_iterator()]
  assert sorted(seen) == sorted(tuple(r["inputs"]) for r in rows["demo_reviews_tone"])


def test_unsetting_the_p3_dir_puts_the_catalogue_tasks_back(trees, use_p3):
  roots, _ = trees
  use_p3(roots["parquet"])
  assert isinstance(catalog.get_task_or_mixture(MIXTURE).tasks[0].source, p3.P3ParquetSource)
  settings.set_p3_dir(None)
  mixture = catalog.get_task_or_mixture(MIXTURE)
  assert all(isinstance(t.source, source.PromptedDataSource) for t in mixture.tasks)
  assert not p3.active()


def _no_rendering(*args, **kwargs):
  raise AssertionError("a prompt was rendered while reading P3")


@pytest.mark.parametrize("layout", ["parquet", "tfrecord"])
def test_a_mixture_trains_on_p3_with_no_prompt_rendered(
  trees, use_p3, layout, tmp_path, monkeypatch
):
  roots, _ = trees
  use_p3(roots[layout])
  monkeypatch.setattr(source, "render_examples", _no_rendering)
  result = train_three_steps(tmp_path / "run", MIXTURE)
  assert all(np.isfinite(v) for v in result["losses"].values())


def train_three_steps(model_dir, mixture: str, **settings) -> dict:
  """Three steps of `trainer.train` on `mixture` with the tiny CFG, in this process; asserts
  the three losses were logged."""
  gin.clear_config()
  result = trainer.train(
    model_dir=str(model_dir),
    mixture_or_task_name=mixture,
    task_feature_lengths={"inputs": 64, "targets": 8},
    batch_size=8,
    train_steps=3,
    model_config=CFG,
    num_virtual_shards=2,
    checkpoint_period=3,
    log_period=1,
    keep_checkpoints=None,
    progress_bar=False,
    tensorboard=False,
    truncation_check_examples=5,
    async_checkpointing=False,
    data_process=False,
    **settings,
  )
  assert sorted(result["losses"]) == [1, 2, 3]
  return result


@pytest.fixture(scope="module")
def model():
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: init_params(CFG, jax.random.key(0)))
  return Transformer(CFG), jax.tree.map(
    lambda s: rng.normal(0, 0.4, s.shape).astype(np.float32), shapes
  )


@pytest.mark.parametrize("layout", ["parquet", "tfrecord"])
def test_p3_score_eval_rows_evaluate_equal_to_the_live_score_eval_task(
  trees, use_p3, model, layout
):
  roots, _ = trees
  net, params = model
  kw = dict(batch_size=4, per_example=True, max_examples=N_EVAL)
  eval_data.clear_cache()
  live = evaluate(net, params, CFG, TWIN, **kw)
  use_p3(roots[layout])
  from_p3 = evaluate(net, params, CFG, TWIN, **kw)
  assert isinstance(
    seqio.TaskRegistry.get(TWIN).source,
    p3.P3ParquetSource if layout == "parquet" else p3.P3CacheSource,
  )
  a, b = live["prompts"][TWIN], from_p3["prompts"][TWIN]
  assert b["kind"] == "rank" and a["metrics"]["num_examples"] == N_EVAL
  assert b["metrics"]["accuracy"] == a["metrics"]["accuracy"]
  assert b["metrics"]["num_examples"] == a["metrics"]["num_examples"]
  ex_a, ex_b = live["examples"][TWIN], from_p3["examples"][TWIN]
  assert [e["idx"] for e in ex_b] == [e["idx"] for e in ex_a]
  assert [e["answer_idx"] for e in ex_b] == [e["answer_idx"] for e in ex_a]
  for e_b, e_a in zip(ex_b, ex_a):  # examples have 2 to 4 choices
    np.testing.assert_allclose(e_b["scores"], e_a["scores"], rtol=1e-6)
  assert b["dataset"] == a["dataset"]  # reported under the catalogue's dataset


def test_a_mixture_task_missing_from_p3_names_the_task_and_the_dir(trees, use_p3):
  roots, _ = trees
  use_p3(roots["parquet"])
  with pytest.raises(FileNotFoundError) as e:
    catalog.get_task_or_mixture("demo_train")
  message = str(e.value)
  assert "demo_facts_based_on_the_text" in message and roots["parquet"] in message


def test_a_registered_task_missing_from_p3_is_an_error_not_a_silent_render(trees, use_p3):
  roots, _ = trees
  use_p3(roots["tfrecord"])
  with pytest.raises(p3.P3TaskMissing, match="demo_pairs_who.*not found in the P3 dir"):
    catalog.get_task_or_mixture("demo_pairs_who")


def test_a_p3_dir_that_does_not_exist_is_named(tmp_path, use_p3):
  use_p3(str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
    catalog.get_task_or_mixture("demo_reviews_tone")


def test_a_parquet_file_without_token_ids_is_named(tmp_path, use_p3):
  write_parquet(
    str(tmp_path),
    "demo_reviews_tone",
    "train",
    [{"inputs_pretokenized": "a", "targets_pretokenized": "b"}],
  )
  use_p3(str(tmp_path))
  task = catalog.get_task_or_mixture("demo_reviews_tone")
  with pytest.raises(p3.P3FormatError, match=r"train-00000-of-00001\.parquet.*'inputs'"):
    task.get_dataset(split="train", shuffle=False)


def test_an_original_layout_info_file_with_text_inputs_is_named(tmp_path, use_p3):
  write_tfrecord(
    str(tmp_path), "demo_reviews_tone", "train", [{"inputs": "text, not ids", "targets": [1]}]
  )
  use_p3(str(tmp_path))
  task = catalog.get_task_or_mixture("demo_reviews_tone")
  with pytest.raises(p3.P3FormatError, match=r"info\.train\.json.*'inputs'"):
    task.get_dataset(split="train", shuffle=False)


def test_tasks_show_prints_p3_rows_and_names_a_missing_task_in_one_line(trees, use_p3, capsys):
  from t0jax.cli import main

  roots, rows = trees
  assert (
    main(["tasks", "show", "demo_reviews_tone", "--p3_dir", roots["parquet"], "--num", "2"]) == 0
  )
  out = capsys.readouterr().out
  assert rows["demo_reviews_tone"][0]["inputs_pretokenized"].strip().splitlines()[0] in out
  assert main(["tasks", "show", "demo_pairs_who", "--p3_dir", roots["parquet"]]) != 0
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert "task demo_pairs_who not found in the P3 dir" in err and roots["parquet"] in err


def test_null_parquet_cells_read_as_empty_values(tmp_path, use_p3):
  write_parquet(
    str(tmp_path),
    "demo_reviews_tone",
    "train",
    [{"inputs": [5, 6], "targets": [7, 1], "inputs_pretokenized": None, "answer_choices": None}],
  )
  use_p3(str(tmp_path))
  (got,) = read(catalog.get_task_or_mixture("demo_reviews_tone"), "train")
  assert list(got["inputs"]) == [5, 6] and got["inputs_pretokenized"] == b""
  assert list(got["answer_choices"]) == []
