"""Where raw examples come from: JSONL first, then generators, TFDS, HF; sharding; settings."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import gin  # noqa: E402
import pytest  # noqa: E402
import seqio  # noqa: E402

import t0jax.catalog as catalog  # noqa: E402
from t0jax.catalog import testing  # noqa: E402
from t0jax.data import readers, settings  # noqa: E402
from t0jax.data.vocab import DeferredVocabulary  # noqa: E402


@pytest.fixture(autouse=True)
def clean_settings():
  yield
  settings.reset()


def _spec(**kw):
  return readers.SourceSpec(dataset="toy", origin="test.yaml", **kw)


def _rows(n):
  return [{"text": f"row {i}", "label": i % 2} for i in range(n)]


def test_shard_ranges_are_contiguous_disjoint_and_cover_every_example():
  for n, shards in ((10, 3), (7, 7), (2, 4), (0, 2)):
    ranges = [readers.shard_range(n, i, shards) for i in range(shards)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
  with pytest.raises(ValueError, match="shard index 3"):
    readers.shard_range(10, 3, 3)


def test_jsonl_reader_shards_keep_global_indices_and_shuffle_within_the_shard(tmp_path):
  testing.write_jsonl(str(tmp_path / "toy" / "train.jsonl"), _rows(10))
  settings.set_data_dir(tmp_path)
  reader = readers.open_split(_spec(), "train")
  assert isinstance(reader, readers.JsonlReader) and len(reader) == 10
  shards = [list(reader.iterate(i, 3)) for i in range(3)]
  assert [idx for shard in shards for idx, _ in shard] == list(range(10))
  assert all(ex["text"] == f"row {idx}" for shard in shards for idx, ex in shard)
  shuffled = list(reader.iterate(1, 3, shuffle=True, seed=5))
  assert sorted(shuffled, key=lambda p: p[0]) == shards[1]
  assert shuffled == list(reader.iterate(1, 3, shuffle=True, seed=5))


def test_jsonl_with_a_broken_line_names_the_file_and_the_example(tmp_path):
  path = tmp_path / "toy" / "train.jsonl"
  testing.write_jsonl(str(path), _rows(2))
  with open(path, "a") as f:
    f.write("{not json\n")
  settings.set_data_dir(tmp_path)
  with pytest.raises(ValueError, match=r"train.jsonl: example 3 .*not valid JSON"):
    list(readers.open_split(_spec(), "train").iterate())


def test_local_jsonl_takes_priority_over_the_generator(tmp_path):
  spec = _spec(generator="t0jax.catalog.demo.families:reviews")
  assert isinstance(readers.open_split(spec, "validation"), readers.GeneratorReader)
  testing.write_jsonl(str(tmp_path / "toy" / "validation.jsonl"), _rows(3))
  settings.set_data_dir(str(tmp_path))
  assert isinstance(readers.open_split(spec, "validation"), readers.JsonlReader)
  os.environ["T0JAX_DATA_SOURCE"] = "generator"
  try:
    assert isinstance(readers.open_split(spec, "validation"), readers.GeneratorReader)
  finally:
    del os.environ["T0JAX_DATA_SOURCE"]


def test_subset_datasets_read_from_dataset_slash_subset_folder(tmp_path):
  spec = readers.SourceSpec(dataset="super_glue", subset="rte")
  assert spec.jsonl_path("/d", "validation") == os.path.join(
    "/d", "super_glue", "rte", "validation.jsonl"
  )


def test_without_local_data_or_datasets_package_the_error_says_how_to_get_data(monkeypatch):
  monkeypatch.setattr(readers, "_hf_installed", lambda: False)
  import builtins

  real_import = builtins.__import__

  def no_datasets(name, *a, **k):
    if name == "datasets":
      raise ImportError("No module named 'datasets'")
    return real_import(name, *a, **k)

  monkeypatch.setattr(builtins, "__import__", no_datasets)
  with pytest.raises(readers.DataUnavailableError, match=r"pip install datasets.*T0JAX_DATA_DIR"):
    readers.open_split(_spec(hf_path="toy"), "train")


def test_manual_download_datasets_explain_how_to_provide_the_data():
  with pytest.raises(readers.DataUnavailableError, match=r"downloaded by hand.*T0JAX_DATA_DIR"):
    readers.open_split(_spec(hf_path="story_cloze", hf_name="2016", manual_dir=True), "validation")


def test_forcing_jsonl_without_the_file_names_the_missing_path(tmp_path):
  settings.set_data_dir(tmp_path)
  settings.set_source("jsonl")
  with pytest.raises(readers.DataUnavailableError, match=r"toy.train\.jsonl does not exist"):
    readers.open_split(_spec(hf_path="toy"), "train")
  with pytest.raises(ValueError, match="not one of"):
    settings.set_source("s3")


def test_task_dataset_honours_shard_info_and_reports_recorded_counts():
  task = catalog.get_task_or_mixture("demo_story_complete_the_sentence_score_eval")
  assert task.num_input_examples("validation") == 200
  assert task.source.supports_arbitrary_sharding
  seen = []
  for index in range(3):
    ds = task.source.get_dataset("validation", shuffle=False, shard_info=seqio.ShardInfo(index, 3))
    seen.append([int(ex["idx"]) for ex in ds.as_numpy_iterator()])
  assert sorted(i for shard in seen for i in shard) == list(range(200))
  assert all(not set(a) & set(b) for a in seen for b in seen if a is not b)


def test_vocabulary_path_is_resolved_at_first_use_and_follows_the_setting(tmp_path):
  vocab = DeferredVocabulary(settings.vocab_path, settings.vocab_extra_ids, label="test")
  assert vocab._model is None  # building tasks loads nothing
  settings.set_vocab(catalog.demo.VOCAB_PATH, extra_ids=0)
  assert vocab.vocab_size == 896 and vocab.eos_id == 1
  settings.set_vocab(str(tmp_path / "missing.model"))
  with pytest.raises(OSError, match=r"missing\.model.*T0JAX_VOCAB"):
    vocab.encode("hello")


def test_default_vocabulary_is_the_t5_one_with_100_extra_ids():
  assert settings.vocab_path() == "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
  assert settings.vocab_extra_ids() == 100


def test_gin_bindings_configure_data_dir_source_and_vocabulary(tmp_path):
  gin.clear_config()
  gin.parse_config(
    [
      f"t0jax.data.data_dir = '{tmp_path}'",
      "t0jax.data.source = 'jsonl'",
      f"t0jax.data.vocab = '{catalog.demo.VOCAB_PATH}'",
      "t0jax.data.vocab_extra_ids = 0",
    ]
  )
  try:
    settings.configure()
  finally:
    gin.clear_config()
  assert settings.data_dir() == str(tmp_path) and settings.source() == "jsonl"
  assert settings.vocab_path() == catalog.demo.VOCAB_PATH and settings.vocab_extra_ids() == 0


def test_environment_variables_apply_when_no_setter_was_called(monkeypatch, tmp_path):
  monkeypatch.setenv("T0JAX_DATA_DIR", str(tmp_path))
  monkeypatch.setenv("T0JAX_VOCAB", "/x/spiece.model")
  assert settings.data_dir() == str(tmp_path) and settings.vocab_path() == "/x/spiece.model"
  settings.set_data_dir("/elsewhere")
  assert settings.data_dir() == "/elsewhere"
  settings.set_data_dir(None)
  assert settings.data_dir() == str(tmp_path)


def test_each_pass_over_a_shuffled_source_visits_every_example_in_a_new_order():
  task = catalog.get_task_or_mixture("demo_facts_follows")
  ds = task.source.get_dataset("validation", shuffle=True, seed=3).repeat(2)
  texts = [ex["inputs"] for ex in ds.as_numpy_iterator()]
  first, second = texts[:200], texts[200:]
  assert sorted(first) == sorted(second) and len(set(first)) == 200
  assert first != second
