"""One home each: T5Config's dict form and shape comparison, the named sizes behind gin's
`T5Config`, the vocabulary module (TF-free until seqio's class is asked for), the vocabulary kept
beside a checkpoint, and the data settings handed to another process."""

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import gin
import pytest

from t0jax.cli import gin_flags
from t0jax.data import settings
from t0jax.data.vocab import VOCAB_FILE, checkpoint_vocabulary
from t0jax.model.config import SIZES, T5Config, get_config, shape_diff

DEMO_VOCAB = Path(__file__).resolve().parent.parent / "tasks" / "demo" / "spiece.model"


def test_config_dict_round_trip_and_unknown_fields_are_named():
  cfg = get_config("tiny", mlp_activations=("relu",), tie_word_embeddings=True, dtype="bfloat16")
  assert T5Config.from_dict(cfg.to_dict()) == cfg
  assert cfg.to_dict()["mlp_activations"] == ["relu"]  # JSON-ready
  with pytest.raises(ValueError, match=r"run/7: unknown T5Config field\(s\) \['d_modle'\]"):
    T5Config.from_dict({**cfg.to_dict(), "d_modle": 3}, "run/7")


def test_shape_diff_ignores_numerics_and_spells_default_decoder_depth_out():
  cfg = get_config("tiny")
  assert (
    shape_diff(
      cfg, cfg.replace(dtype="bfloat16", dropout_rate=0.1, scan_layers=True, remat_policy="full")
    )
    == {}
  )
  # None means "as deep as the encoder": a checkpoint that wrote the number is the same model.
  assert shape_diff(cfg, cfg.replace(num_decoder_layers=cfg.num_layers)) == {}
  assert shape_diff(cfg, cfg.replace(d_model=64)) == {"d_model": (128, 64)}


@pytest.fixture()
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.parametrize("size", sorted(SIZES))
def test_gin_model_files_name_the_size_and_get_its_shapes(clean_gin, size):
  gin_flags.parse([f"gin/models/t5_1_1_{size}.gin"], [], finalize=False)
  assert gin.get_configurable("T5Config")() == get_config(size)


def test_bindings_on_top_of_a_size_still_apply(clean_gin):
  gin_flags.parse(
    ["gin/models/t5_1_1_xl.gin"],
    ["T5Config.vocab_size=896", "T5Config.d_model=256", "DROPOUT_RATE=0.1"],
    finalize=False,
  )
  cfg = gin.get_configurable("T5Config")()
  assert cfg == get_config("xl", vocab_size=896, d_model=256, dropout_rate=0.1)


def test_a_misspelt_model_field_fails_with_the_closest_name(clean_gin):
  with pytest.raises(gin_flags.GinConfigError, match=r"T5Config\.d_modle.*Closest: d_model"):
    gin_flags.parse(["gin/models/t5_1_1_tiny.gin"], ["T5Config.d_modle=3"], finalize=False)


def test_vocab_module_imports_no_tensorflow_until_seqios_class_is_used():
  code = (
    "import sys\n"
    "import t0jax.data.vocab as v\n"
    "assert 'tensorflow' not in sys.modules and 'seqio' not in sys.modules\n"
    "import t0jax.data.settings\n"
    "assert 'tensorflow' not in sys.modules\n"
    "cls = v.DeferredVocabulary\n"
    "assert 'seqio' in sys.modules and cls is v.DeferredVocabulary\n"
  )
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]


def test_deferred_vocabulary_pickles_with_its_resolved_path():
  from t0jax.data.vocab import DeferredVocabulary

  vocab = DeferredVocabulary(str(DEMO_VOCAB), extra_ids=0, label="test")
  copy = pickle.loads(pickle.dumps(vocab))
  assert type(copy) is DeferredVocabulary and copy == vocab
  assert copy.vocab_size == vocab.vocab_size == 896


def test_checkpoint_vocabulary_is_found_up_to_the_model_dir_and_no_further(tmp_path):
  step = tmp_path / "runs" / "run" / "checkpoints" / "7"
  step.mkdir(parents=True)
  shutil.copyfile(DEMO_VOCAB, tmp_path / "runs" / VOCAB_FILE)  # above MODEL_DIR: not the run's
  assert checkpoint_vocabulary(step) is None
  shutil.copyfile(DEMO_VOCAB, tmp_path / "runs" / "run" / VOCAB_FILE)
  for path in (step, step.parent, step.parent.parent):
    assert checkpoint_vocabulary(path) == tmp_path / "runs" / "run" / VOCAB_FILE


def test_settings_snapshot_applies_elsewhere_and_every_change_is_counted(tmp_path):
  settings.reset()
  try:
    settings.set_data_dir(tmp_path)
    settings.set_vocab(str(DEMO_VOCAB), extra_ids=0)
    saved = settings.snapshot()
    before = settings.version()
    settings.reset()
    assert settings.version() > before and settings.data_dir() != str(tmp_path)
    settings.apply(saved)
    assert settings.data_dir() == str(tmp_path) and settings.vocab_path() == str(DEMO_VOCAB)
    assert settings.vocab_extra_ids() == 0
  finally:
    settings.reset()
