"""Conversion between the unscanned (`layers_{i}`) and scanned (`layers`, stacked) layouts."""
import re

import jax
import numpy as np

from t0jax.model.config import T5Config

_LAYER = re.compile(r"layers_(\d+)$")


def _stack(trees):
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def scan_params(params, cfg: T5Config):
  """`encoder/layers_{i}/...` -> `encoder/layers/...` with a leading layer axis."""
  del cfg
  out = dict(params)
  for stack in ("encoder", "decoder"):
    sub = dict(params[stack])
    indices = sorted(int(m.group(1)) for k in sub if (m := _LAYER.match(k)))
    if not indices:
      continue
    sub["layers"] = _stack([sub.pop(f"layers_{i}") for i in indices])
    out[stack] = sub
  return out


def unscan_params(params, cfg: T5Config):
  """Inverse of `scan_params`."""
  out = dict(params)
  for stack, n in (("encoder", cfg.num_layers), ("decoder", cfg.decoder_layers)):
    sub = dict(params[stack])
    if "layers" not in sub:
      continue
    stacked = sub.pop("layers")
    for i in range(n):
      sub[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    out[stack] = sub
  return out
