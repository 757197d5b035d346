"""Small models for the tests: the tiny t0jax T5 over the demo vocabulary that the data and
evaluation tests share, and the one builder of random Hugging Face T5 models every test that
needs a transformers reference uses."""

import torch
import transformers

from t0jax.model import T5Config

# 896 rows: the demo vocabulary (tasks/demo/spiece.model).
DEMO_TINY = T5Config(
  vocab_size=896,
  d_model=32,
  num_heads=2,
  head_dim=8,
  d_ff=48,
  num_layers=1,
  num_decoder_layers=1,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=16,
)


def random_t5(
  dims: dict,
  *,
  config_cls=transformers.T5Config,
  model_cls=transformers.T5ForConditionalGeneration,
  separate_head: bool = True,
  seed: int = 0,
):
  """A random T5 (eval mode, no dropout) of `dims` (transformers config fields). transformers 5
  ties the output head to the embedding at init; v1.1, T0 and mT5 checkpoints have their own, so
  an untied model gets its own random head unless `separate_head` is False."""
  torch.manual_seed(seed)
  model = model_cls(config_cls(**{"dropout_rate": 0.0, **dims})).eval()
  if separate_head and dims.get("tie_word_embeddings") is False:
    config = model.config
    model.lm_head.weight = torch.nn.Parameter(torch.randn(config.vocab_size, config.d_model))
  return model


def state_dict(model) -> dict:
  """What the hub's `pytorch_model.bin` files hold: the shared embedding once, plus its copies
  under other names."""
  return {k: v.detach().clone() for k, v in model.state_dict().items()}
