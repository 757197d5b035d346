"""Fine-tuning starts from an mT5/mT0 checkpoint as published (`pytorch_model.bin` of an
MT5ForConditionalGeneration, 250,112-row embedding and untied head), end to end through
`t0jax train`: with a zero learning rate the trained checkpoint holds mT5's weights unchanged
(transformers gives the same logits after `t0jax convert`), and with the run's own rate the
loss goes down from mT5's starting point."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from small_models import random_t5, state_dict
from t0jax.cli import convert, train
from t0jax.data import settings
from t0jax.train.writer import read_metrics

ROOT = Path(__file__).resolve().parent.parent
SMALL_GIN = ROOT / "tests" / "data" / "train_small.gin"
VOCAB = ROOT / "tasks" / "demo" / "spiece.model"
MT5_VOCAB_SIZE = 250112


@pytest.fixture(scope="module")
def mt5_dir(tmp_path_factory):
  """A random mT5 with train_small.gin's dimensions, as the hub holds mT5: config.json,
  pytorch_model.bin (torch.save of the state dict) and its spiece.model."""
  model = random_t5(
    dict(
      vocab_size=MT5_VOCAB_SIZE,
      d_model=32,
      d_kv=8,
      num_heads=4,
      d_ff=64,
      num_layers=2,
      num_decoder_layers=2,
      feed_forward_proj="gated-gelu",
      tie_word_embeddings=False,
      decoder_start_token_id=0,
    ),
    config_cls=transformers.MT5Config,
    model_cls=transformers.MT5ForConditionalGeneration,
  )
  directory = tmp_path_factory.mktemp("mt5")
  model.config.save_pretrained(directory)
  torch.save(state_dict(model), directory / "pytorch_model.bin")
  (directory / "spiece.model").write_bytes(VOCAB.read_bytes())
  return directory, model


def _train(model_dir, mt5, *flags):
  rc = train.main(
    [
      f"--gin_file={SMALL_GIN}",
      f"--model_dir={model_dir}",
      f"--gin.INITIAL_CHECKPOINT_PATH='{mt5}'",
      f"--gin.T5Config.vocab_size={MT5_VOCAB_SIZE}",
      "--gin.TRAIN_STEPS=3",
      "--gin.CHECKPOINT_PERIOD=3",
      *flags,
    ]
  )
  assert rc == 0


def test_zero_learning_rate_keeps_mt5s_weights_through_train_and_convert(mt5_dir, tmp_path):
  directory, model = mt5_dir
  vocab = str(directory / "spiece.model")
  saved = settings.snapshot()
  try:  # gin/models/mt5_*.gin bind the catalogue's vocabulary the same way
    _train(
      tmp_path / "run",
      directory,
      "--gin.LEARNING_RATE=0.0",
      f"--gin.t0jax.data.vocab='{vocab}'",
      "--gin.t0jax.data.vocab_extra_ids=0",
    )
    assert (settings.vocab_path(), settings.vocab_extra_ids()) == (vocab, 0)
  finally:
    settings.apply(saved)
  assert convert.main([str(tmp_path / "run"), str(tmp_path / "hf"), "--to", "hf"]) == 0
  config = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert config["vocab_size"] == MT5_VOCAB_SIZE
  back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
  ids = torch.tensor([[5, 17, 230, 9, 1]])
  labels = torch.tensor([[44, 3, 1]])
  with torch.no_grad():
    ours = back(input_ids=ids, labels=labels).logits
    theirs = model(input_ids=ids, labels=labels).logits
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5, rtol=0)


def test_fine_tuning_from_mt5_lowers_the_loss(mt5_dir, tmp_path):
  directory, _ = mt5_dir
  _train(tmp_path / "run", directory, "--gin.LEARNING_RATE=0.01")
  losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
  assert len(losses) == 3 and all(np.isfinite(losses))
  assert losses[-1] < losses[0]
