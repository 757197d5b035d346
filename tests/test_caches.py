"""SeqIO caches (T5X's USE_CACHED_TASKS): a cache written from a catalogue task in seqio's format
is read back by seqio's own cache reader equal to the live task; a cached mixture trains with no
prompt rendered; a cached score-eval task evaluates equal to the live one; P3's original layout
is read as caches through the cache directories; and a missing or mismatching cache is a clear
error naming the task and the file."""

import json
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest
import seqio
import tensorflow as tf

import t0jax.catalog as catalog
from t0jax.data import caches, settings, source
from t0jax.evaluate import EvalDataError, data as eval_data, evaluate
from t0jax.train.input_pipeline import TrainData

from test_p3_data import (
  CFG,
  TWIN,
  live_rows,
  model,  # noqa: F401  (a fixture)
  p3_score_eval_rows,
  train_three_steps,
  write_tfrecord,
)

TRAIN_TASKS = ["demo_reviews_tone", "demo_news_topic_label"]
MIXTURE = "test_caches_mixture"
N_TRAIN, N_EVAL = 48, 12


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("seqio_cache"))
  for name in TRAIN_TASKS:
    caches.write_cache(
      seqio.TaskRegistry.get(name), "train", root, num_shards=2, max_examples=N_TRAIN
    )
  caches.write_cache(seqio.TaskRegistry.get(TWIN), "validation", root, max_examples=N_EVAL)
  seqio.MixtureRegistry.remove(MIXTURE)
  seqio.MixtureRegistry.add(MIXTURE, [(t, 1.0) for t in TRAIN_TASKS])
  yield root
  seqio.MixtureRegistry.remove(MIXTURE)


@pytest.fixture
def cache_dirs():
  """seqio's global cache dirs for one test (T5X's --seqio_additional_cache_dirs)."""
  before = list(seqio.utils.get_global_cache_dirs())

  def add(*dirs):
    seqio.add_global_cache_dirs(list(dirs))

  yield add
  seqio.utils.set_global_cache_dirs(before)
  settings.set_cache_dirs(None)
  for name in TRAIN_TASKS + [TWIN]:  # seqio remembers where it found a task's cache
    seqio.TaskRegistry.get(name)._cache_dir = None
  eval_data.clear_cache()


def _no_rendering(*args, **kwargs):
  raise AssertionError("a prompt was rendered while reading a cache")


def test_catalogue_tasks_carry_a_cache_placeholder_after_tokenization_and_eos():
  task = seqio.TaskRegistry.get("demo_reviews_tone")
  assert task.supports_caching and not task.requires_caching
  steps = task.preprocessors
  k = next(i for i, p in enumerate(steps) if isinstance(p, seqio.CacheDatasetPlaceholder))
  assert seqio.preprocessors.tokenize in steps[:k]
  assert seqio.preprocessors.append_eos in steps[:k]


def test_a_written_cache_has_seqio_layout_and_reads_back_equal_to_the_live_task(
  cache_dir, cache_dirs
):
  folder = os.path.join(cache_dir, "demo_reviews_tone")
  assert sorted(os.listdir(folder)) == [
    "COMPLETED",
    "info.train.json",
    "stats.train.json",
    "train.tfrecord-00000-of-00002",
    "train.tfrecord-00001-of-00002",
  ]
  with open(os.path.join(folder, "info.train.json")) as f:
    info = json.load(f)
  assert info["num_shards"] == 2 and info["seqio_version"] == seqio.__version__
  assert info["features"]["inputs"] == {"shape": [None], "dtype": "int32"}
  assert info["features"]["inputs_pretokenized"] == {"shape": [], "dtype": "string"}
  with open(os.path.join(folder, "stats.train.json")) as f:
    assert json.load(f)["examples"] == N_TRAIN
  cache_dirs(cache_dir)
  task = seqio.TaskRegistry.get("demo_reviews_tone")
  assert task.cache_dir == folder  # seqio found it by itself (COMPLETED)
  lengths = {"inputs": 32, "targets": 3}
  cached = task.get_dataset(lengths, split="train", shuffle=False, use_cached=True)
  live = task.get_dataset(lengths, split="train", shuffle=False).take(N_TRAIN)
  key = lambda ex: (tuple(ex["inputs"]), tuple(ex["targets"]))  # noqa: E731
  assert sorted(map(key, cached.as_numpy_iterator())) == sorted(map(key, live.as_numpy_iterator()))


def test_a_cached_mixture_trains_with_no_prompt_rendered(
  cache_dir, cache_dirs, tmp_path, monkeypatch
):
  cache_dirs(cache_dir)
  monkeypatch.setattr(source, "render_examples", _no_rendering)
  train_three_steps(tmp_path / "run", MIXTURE, use_cached_tasks=True)


def test_cache_dirs_from_the_settings_travel_with_the_training_data(cache_dir, cache_dirs):
  settings.set_cache_dirs([cache_dir])
  data = TrainData(MIXTURE, {"inputs": 64, "targets": 8}, 8, num_virtual_shards=2, use_cached=True)
  assert cache_dir in data.cache_dirs  # handed to the data process with the rest of `data`
  batch = next(data.host_batches())
  assert batch["encoder_input_tokens"].shape == (8, 64)


def test_a_cached_score_eval_task_evaluates_equal_to_the_live_task(
  cache_dir, cache_dirs, model, monkeypatch
):
  net, params = model
  kw = dict(batch_size=4, per_example=True, max_examples=N_EVAL)
  live = evaluate(net, params, CFG, TWIN, **kw)
  cache_dirs(cache_dir)
  monkeypatch.setattr(source, "render_examples", _no_rendering)
  cached = evaluate(net, params, CFG, TWIN, use_cached=True, **kw)
  a, b = live["prompts"][TWIN], cached["prompts"][TWIN]
  assert b["metrics"]["accuracy"] == a["metrics"]["accuracy"]
  assert [e["idx"] for e in cached["examples"][TWIN]] == [e["idx"] for e in live["examples"][TWIN]]
  for e_b, e_a in zip(cached["examples"][TWIN], live["examples"][TWIN]):
    np.testing.assert_allclose(e_b["scores"], e_a["scores"], rtol=1e-6)


def test_p3_original_layout_is_read_as_seqio_caches(tmp_path, cache_dirs, model, monkeypatch):
  """P3's `data/<task>/` folders (no COMPLETED) through --seqio_additional_cache_dirs: the
  catalogue's own task reads them with USE_CACHED_TASKS, one row per choice grouped back."""
  write_tfrecord(
    str(tmp_path), TWIN, "validation", p3_score_eval_rows(live_rows(TWIN, "validation", N_EVAL))
  )
  net, params = model
  kw = dict(batch_size=4, per_example=True, max_examples=N_EVAL)
  live = evaluate(net, params, CFG, TWIN, **kw)
  cache_dirs(str(tmp_path / "data"))
  monkeypatch.setattr(source, "render_examples", _no_rendering)
  cached = evaluate(net, params, CFG, TWIN, use_cached=True, **kw)
  assert (
    cached["prompts"][TWIN]["metrics"]["accuracy"] == live["prompts"][TWIN]["metrics"]["accuracy"]
  )
  for e_b, e_a in zip(cached["examples"][TWIN], live["examples"][TWIN]):
    np.testing.assert_allclose(e_b["scores"], e_a["scores"], rtol=1e-6)


def test_use_cached_without_a_cache_names_the_task_and_the_searched_dirs(tmp_path, cache_dirs):
  cache_dirs(str(tmp_path))
  data = TrainData(
    "demo_pairs_who", {"inputs": 32, "targets": 8}, 8, num_virtual_shards=2, use_cached=True
  )
  with pytest.raises(caches.CacheError, match=f"demo_pairs_who.*{tmp_path}"):
    next(data.host_batches())


def test_a_cache_whose_info_does_not_match_the_task_is_named(
  cache_dir, tmp_path, cache_dirs, model
):
  bad = tmp_path / "bad"
  (bad / TWIN).mkdir(parents=True)
  for name in os.listdir(os.path.join(cache_dir, TWIN)):
    (bad / TWIN / name).write_bytes(open(os.path.join(cache_dir, TWIN, name), "rb").read())
  info = json.loads((bad / TWIN / "info.validation.json").read_text())
  info["features"]["inputs"] = {"shape": [], "dtype": "string"}  # text, not token ids
  (bad / TWIN / "info.validation.json").write_text(json.dumps(info))
  cache_dirs(str(bad))
  net, params = model
  with pytest.raises(EvalDataError, match=r"info\.validation\.json stores 'inputs' as string"):
    evaluate(net, params, CFG, TWIN, use_cached=True, batch_size=4)


def test_a_cache_without_the_split_names_the_splits_it_has(cache_dir, cache_dirs):
  cache_dirs(cache_dir)
  with pytest.raises(caches.CacheError, match="no split 'validation'.*it holds train"):
    caches.check_cache(seqio.TaskRegistry.get("demo_reviews_tone"), "validation")


def test_trimming_after_the_cache_equals_seqio_append_eos_after_trim():
  vocab = catalog.DEMO_VOCABULARY
  features = {"targets": seqio.Feature(vocab, add_eos=True)}
  rows = [list(range(2, 2 + n)) for n in range(0, 9)]
  plain = tf.data.Dataset.from_generator(
    lambda: ({"targets": r} for r in rows),
    output_signature={"targets": tf.TensorSpec([None], tf.int32)},
  )
  for length in (1, 3, 5, 12):
    want = seqio.preprocessors.append_eos_after_trim(plain, features, {"targets": length})
    got = caches.trim_keeping_eos(
      seqio.preprocessors.append_eos(plain, features), features, {"targets": length}
    )
    assert [list(x["targets"]) for x in got.as_numpy_iterator()] == [
      list(x["targets"]) for x in want.as_numpy_iterator()
    ]
