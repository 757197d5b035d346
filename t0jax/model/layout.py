"""The unscanned (`layers_{i}`) and scanned (`layers`, stacked on a leading axis) parameter layouts.

Every parameter has one *unscanned path*, e.g. `("encoder", "layers_3", "mlp", "wo", "kernel")`.
Checkpoint formats name parameters by that path; `set_leaf` and `get_leaf` read and write it in
either layout (a scanned tree keeps layer 3 at index 3 of `encoder/layers/mlp/wo/kernel`), and
`scan_params` / `unscan_params` convert whole trees.
"""

import re
from typing import Iterator, Optional, Tuple

import jax
import numpy as np

from t0jax.model.config import T5Config

_LAYER = re.compile(r"layers_(\d+)$")


def num_stack_layers(stack: str, cfg: T5Config) -> int:
  return cfg.num_layers if stack == "encoder" else cfg.decoder_layers


def layer_of(path: tuple) -> Optional[Tuple[str, int]]:
  """(stack, layer index) of an unscanned path inside a layer, else None."""
  match = _LAYER.match(path[1]) if len(path) > 2 else None
  return (path[0], int(match.group(1))) if match else None


def set_leaf(params: dict, path: tuple, value, cfg: T5Config) -> None:
  """Put `value` at its unscanned `path` in `params`, laid out as `cfg.scan_layers` says.

  In the scanned layout the stacked array is allocated on the first layer written and filled
  in place, so a whole model never exists twice in memory.
  """
  layer = layer_of(path)
  if cfg.scan_layers and layer:
    stack, index = layer
    node = params.setdefault(stack, {}).setdefault("layers", {})
    for key in path[2:-1]:
      node = node.setdefault(key, {})
    if path[-1] not in node:
      node[path[-1]] = np.empty(
        (num_stack_layers(stack, cfg),) + np.shape(value), np.asarray(value).dtype
      )
    node[path[-1]][index] = value
    return
  node = params
  for key in path[:-1]:
    node = node.setdefault(key, {})
  node[path[-1]] = value


def get_leaf(params, path: tuple):
  """The leaf at an unscanned `path` of either layout (a scanned tree gives one layer's slice).
  KeyError naming the path if the tree has no such parameter."""
  layer = layer_of(path)
  node, keys, index = params, path, None
  if layer and path[0] in params and "layers" in params[path[0]]:
    node, keys, index = params[path[0]]["layers"], path[2:], layer[1]
  for key in keys:
    if not isinstance(node, dict) or key not in node:
      raise KeyError("/".join(path))
    node = node[key]
  return node if index is None else node[index]


def unscanned_paths(params, cfg: T5Config) -> Iterator[tuple]:
  """The unscanned path of every parameter of `params` (either layout)."""

  def walk(node, prefix):
    if isinstance(node, dict):
      for k, v in node.items():
        yield from walk(v, prefix + (k,))
    else:
      yield prefix

  for path in walk(params, ()):
    if len(path) > 2 and path[1] == "layers":
      n = num_stack_layers(path[0], cfg)
      yield from ((path[0], f"layers_{i}") + path[2:] for i in range(n))
    else:
      yield path


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
  for stack in ("encoder", "decoder"):
    sub = dict(params[stack])
    if "layers" not in sub:
      continue
    stacked = sub.pop("layers")
    for i in range(num_stack_layers(stack, cfg)):
      sub[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    out[stack] = sub
  return out


def to_layout(params, cfg: T5Config, scanned: bool):
  """`params` (either layout) in the scanned layout if `scanned`, else the unscanned one."""
  is_scanned = any("layers" in params.get(s, {}) for s in ("encoder", "decoder"))
  if is_scanned == scanned:
    return params
  return scan_params(params, cfg) if scanned else unscan_params(params, cfg)
