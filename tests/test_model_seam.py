"""The model seam (`EncoderDecoderModel`): the loss of a batch equals T5X's definition computed
by hand, the log-likelihood of targets equals transformers', generation goes through it, and it
is the only code that runs the network."""

import re
from pathlib import Path

import jax
import numpy as np
import pytest

from t0jax.model import EncoderDecoderModel, T5Config, Transformer, as_model, init_params
from t0jax.model.losses import (
  NUM_REAL_TARGET_TOKENS,
  NUM_TOTAL_TARGET_TOKENS,
  loss_normalizer,
  parse_loss_normalizing_factor,
  shift_right,
)

ROOT = Path(__file__).resolve().parent.parent
CFG = T5Config(
  vocab_size=50,
  d_model=16,
  num_heads=2,
  head_dim=8,
  d_ff=24,
  num_layers=1,
  num_decoder_layers=1,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=16,
)


@pytest.fixture(scope="module")
def params():
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: init_params(CFG, jax.random.key(0)))
  return jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(1)
  targets = rng.integers(2, 50, (3, 6)).astype(np.int32)
  targets[0, 4:] = 0  # padding
  targets[2, 2:] = 0
  return {
    "encoder_input_tokens": rng.integers(2, 50, (3, 9)).astype(np.int32),
    "decoder_target_tokens": targets,
    "decoder_input_tokens": np.asarray(shift_right(targets)),
  }


def _log_softmax(x):
  x = x.astype(np.float64)
  z = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
  return x - z[..., None], z


@pytest.mark.parametrize("z_loss,label_smoothing", [(0.0, 0.0), (1e-4, 0.0), (1e-4, 0.1)])
def test_loss_sums_equal_t5x_cross_entropy_computed_by_hand(params, batch, z_loss, label_smoothing):
  model = EncoderDecoderModel(Transformer(CFG))
  total, aux = model.loss_sums(params, batch, z_loss=z_loss, label_smoothing=label_smoothing)
  logits = np.asarray(
    Transformer(CFG).apply(
      {"params": params},
      batch["encoder_input_tokens"],
      batch["decoder_input_tokens"],
      batch["decoder_target_tokens"],
    )
  )
  log_probs, log_z = _log_softmax(logits)
  targets = batch["decoder_target_tokens"]
  weights = (targets > 0).astype(np.float64)
  vocab = CFG.vocab_size
  # T5X: soft targets (1 - ls on the label, ls / (V - 1) elsewhere), minus their entropy.
  on, off = 1.0 - label_smoothing, label_smoothing / (vocab - 1)
  soft = np.full(logits.shape, off)
  np.put_along_axis(soft, targets[..., None], on, axis=-1)
  entropy = -(on * np.log(on) + (vocab - 1) * off * np.log(off)) if label_smoothing else 0.0
  token_loss = -(soft * log_probs).sum(-1) - entropy + z_loss * log_z**2
  np.testing.assert_allclose(float(total), (token_loss * weights).sum(), rtol=1e-5)
  np.testing.assert_allclose(float(aux["loss_sum"]), float(total), rtol=1e-6)
  np.testing.assert_allclose(
    float(aux["z_loss_sum"]), (z_loss * log_z**2 * weights).sum(), rtol=1e-4, atol=1e-9
  )
  assert float(aux["weight"]) == weights.sum() == 12
  assert float(aux["correct"]) == ((logits.argmax(-1) == targets) * weights).sum()


def test_score_batch_equals_transformers_summed_log_likelihood(params, batch, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from t0jax.checkpoints import save_hf_checkpoint

  hf = transformers.T5ForConditionalGeneration.from_pretrained(
    save_hf_checkpoint(params, CFG, tmp_path / "hf")
  ).eval()
  labels = torch.tensor(batch["decoder_target_tokens"], dtype=torch.long)
  ids = torch.tensor(batch["encoder_input_tokens"], dtype=torch.long)
  with torch.no_grad():
    logits = hf(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).logits
  picked = torch.log_softmax(logits.double(), -1).gather(-1, labels[..., None])[..., 0]
  theirs = (picked * (labels > 0)).sum(-1).numpy()
  ours = np.asarray(EncoderDecoderModel.from_config(CFG).score_batch(params, batch))
  np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_packed_targets_score_like_targets_decoded_alone(params, batch):
  """Two targets in one decoder row, kept apart by segment ids, get the log-probabilities each
  gets in a row of its own (the packed choices of rank classification)."""
  model = EncoderDecoderModel.from_config(CFG)
  enc = batch["encoder_input_tokens"][:1]
  first, second = [5, 9, 1], [7, 1]
  encoded = model.encode(params, enc)
  alone = []
  for t in (first, second):
    targets = np.array([t + [0] * (6 - len(t))], np.int32)
    alone.append(
      np.asarray(
        model.token_log_probs(params, encoded, enc, np.asarray(shift_right(targets)), targets)
      )
    )
  packed = np.array([first + second + [0]], np.int32)
  segments = np.array([[1, 1, 1, 2, 2, 0]], np.int32)
  inputs = np.array([[0, 5, 9, 0, 7, 0]], np.int32)  # shifted within each target
  got = np.asarray(model.token_log_probs(params, encoded, enc, inputs, packed, segments))
  np.testing.assert_allclose(got[0, :3], alone[0][0, :3], atol=1e-5)
  np.testing.assert_allclose(got[0, 3:5], alone[1][0, :2], atol=1e-5)
  assert got[0, 5] == 0.0


def test_predict_batch_with_one_beam_is_greedy(params, batch):
  from t0jax.model.decoding import greedy_decode

  model = EncoderDecoderModel.from_config(CFG)
  enc = batch["encoder_input_tokens"]
  np.testing.assert_array_equal(
    model.predict_batch(params, enc, max_decode_length=5),
    greedy_decode(model, params, enc, max_decode_length=5),
  )


def test_as_model_wraps_a_network_or_config_and_refuses_anything_else():
  assert as_model(Transformer(CFG)) == as_model(CFG) == EncoderDecoderModel.from_config(CFG)
  seam = as_model(CFG)
  assert as_model(seam) is seam and hash(seam) == hash(as_model(Transformer(CFG)))
  with pytest.raises(TypeError, match="got dict"):
    as_model({"d_model": 16})


def test_only_the_seam_runs_the_network():
  # A flax call passes the variables first: `.apply({"params": ...}, ...)`.
  network_call = re.compile(r"""\.apply\(\s*\{\s*["']params""")
  callers = sorted(
    str(p.relative_to(ROOT))
    for p in (ROOT / "t0jax").rglob("*.py")
    if network_call.search(p.read_text())
  )
  assert callers == ["t0jax/model/models.py"]


@pytest.mark.parametrize(
  "spelling", ["NUM_REAL_TARGET_TOKENS", "num_real_target_tokens", "Num_Real_Target_Tokens"]
)
def test_loss_normalizing_factor_is_one_spelling_in_any_case(spelling):
  assert parse_loss_normalizing_factor(spelling) == NUM_REAL_TARGET_TOKENS
  weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  assert float(loss_normalizer(weights, spelling)) == 3.0


def test_loss_normalizing_factor_constants_totals_and_none():
  weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  assert parse_loss_normalizing_factor("NUM_TOTAL_TARGET_TOKENS") == NUM_TOTAL_TARGET_TOKENS
  assert float(loss_normalizer(weights, "num_total_target_tokens")) == 6.0
  assert float(loss_normalizer(weights, 233472)) == 233472.0
  assert float(loss_normalizer(weights, "233472.0")) == 233472.0
  assert float(loss_normalizer(weights, None)) == 1.0
  assert parse_loss_normalizing_factor("None") is None


@pytest.mark.parametrize("bad", [0, -2.0, "tokens", True])
def test_bad_loss_normalizing_factor_names_the_macro(bad):
  with pytest.raises(ValueError, match=r"LOSS_NORMALIZING_FACTOR=.*NUM_REAL_TARGET_TOKENS"):
    parse_loss_normalizing_factor(bad)
