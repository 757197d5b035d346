"""T5X native checkpoints: `checkpoint_<step>/checkpoint` plus per-parameter zarr directories.

The `checkpoint` file is flax msgpack of `{"version": 3, "optimizer": {"target": params,
"state": {"step": ..., "param_states": ...}}}`. Each array is either inline or replaced by a
tensorstore spec whose kvstore path is relative to the step directory and names the parameter's
flattened path (`target.encoder.layers_0.attention.query.kernel`, a gzip zarr array, bf16
allowed). T5X's parameter names are those of its `examples/t5/network.py`, which t0jax's tree
keeps, so no name table is needed; attention kernels may be 2-D (`[embed, heads * head_dim]`, as
T5X stores them) or 3-D. A T5X checkpoint holds no model config and no vocabulary: the config is
inferred from the shapes, and what shapes cannot tell (relative attention max distance, the MLP
activation) comes from gin (`T5Config.relative_attention_max_distance = ...`) or T5 1.1's values.
With `use_orbax=True`, T5X writes `checkpoint_<step>/state/` instead, an Orbax PyTree of the same
`{"target", "state"}` dict: its parameters are read with Orbax, one at a time.
"""

import functools
import logging
import re

import jax
import ml_dtypes
import numpy as np
from etils import epath

from t0jax.checkpoints import flax_msgpack, hf
from t0jax.checkpoints.hf import CheckpointError, CheckpointNotFoundError
from t0jax.model.config import T5Config

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint"
SUPPORTED_VERSIONS = (2, 3)  # 3 writes bf16 natively; 2 reads the same when it holds no uint16
_STEP_DIR = re.compile(r"checkpoint_(\d+)$")
_LAYER = re.compile(r"layers_(\d+)$")
# What parameter shapes cannot tell, with the values of every T5 1.1 / LM-adapted checkpoint.
OVERRIDABLE = (
  "relative_attention_max_distance",
  "mlp_activations",
  "layer_norm_epsilon",
  "dropout_rate",
)


def _is_step_dir(path: epath.Path) -> bool:
  return (path / CHECKPOINT_FILE).is_file() or bool(
    _STEP_DIR.match(path.name) and (path / "state").is_dir()
  )


def _step_dir(path) -> epath.Path:
  """A T5X step directory from it, its `checkpoint` file, or a model dir (latest step)."""
  path = epath.Path(path)
  if path.name == CHECKPOINT_FILE and path.is_file():
    return path.parent
  if _is_step_dir(path):
    return path
  steps = sorted(
    (int(m.group(1)), p)
    for p in _children(path)
    if (m := _STEP_DIR.match(p.name)) and _is_step_dir(p)
  )
  if not steps:
    raise CheckpointNotFoundError(
      f"{path}: no T5X checkpoint (a checkpoint_<step> directory with a '{CHECKPOINT_FILE}' file)."
    )
  return steps[-1][1]


def _children(path: epath.Path) -> list:
  return list(path.iterdir()) if path.is_dir() else []


def detect(path) -> bool:
  try:
    _step_dir(path)
    return True
  except CheckpointError:
    return False


def read_step(path):
  """The training step of the checkpoint (from its directory name)."""
  match = _STEP_DIR.match(_step_dir(path).name)
  return int(match.group(1)) if match else None


def _contents(step_dir: epath.Path) -> dict:
  if (step_dir / "state").is_dir() and not (step_dir / CHECKPOINT_FILE).exists():
    return _orbax_target(step_dir / "state")
  tree = flax_msgpack.read_tree(step_dir / CHECKPOINT_FILE)
  version = tree.get("version", 0) if isinstance(tree, dict) else None
  if version not in SUPPORTED_VERSIONS:
    raise CheckpointError(
      f"{step_dir / CHECKPOINT_FILE}: T5X checkpoint version {version!r} is not supported "
      f"(t0jax reads versions {list(SUPPORTED_VERSIONS)}); re-save it with a recent T5X."
    )
  try:
    target = tree["optimizer"]["target"]
  except (KeyError, TypeError):
    raise CheckpointError(
      f"{step_dir / CHECKPOINT_FILE}: no optimizer/target tree; not a T5X checkpoint."
    ) from None
  return target


class _OrbaxLeaf:
  """A parameter of an Orbax-based T5X checkpoint (`use_orbax=True`), read alone on demand."""

  def __init__(self, state_dir: epath.Path, path: tuple, shape: tuple):
    self.state_dir, self.path, self.shape = state_dir, path, tuple(shape)

  def read(self) -> np.ndarray:
    import orbax.checkpoint as ocp

    def one(leaf):  # the tree {"target": {...: leaf}} holding only this parameter
      node = leaf
      for key in reversed(("target",) + self.path):
        node = {key: node}
      return node

    restored = ocp.PyTreeCheckpointer().restore(
      str(self.state_dir),
      args=ocp.args.PyTreeRestore(
        item=one(np.zeros(self.shape, np.float32)),
        restore_args=one(ocp.RestoreArgs(restore_type=np.ndarray)),
        partial_restore=True,
      ),
    )
    node = restored["target"]
    for key in self.path:
      node = node[key]
    return np.asarray(node)


def _orbax_target(state_dir: epath.Path) -> dict:
  """The `target` tree of T5X's Orbax `state` item, as `_OrbaxLeaf`s (its metadata only)."""
  import orbax.checkpoint as ocp

  try:
    tree = dict(ocp.PyTreeCheckpointer().metadata(str(state_dir)).item_metadata)
    target = tree["target"]
  except (KeyError, TypeError, ValueError, OSError) as e:
    raise CheckpointError(
      f"{state_dir}: not a readable Orbax-based T5X checkpoint (expected a 'target' tree in its "
      f"state item: {e}); convert it with T5X to the native format (use_orbax=False)."
    ) from None

  def wrap(node, path):
    if isinstance(node, dict) or hasattr(node, "keys"):
      return {k: wrap(v, path + (k,)) for k, v in dict(node).items()}
    return _OrbaxLeaf(state_dir, path, node.shape)

  return wrap(target, ())


def _is_spec(node) -> bool:
  return isinstance(node, dict) and {"driver", "kvstore"} <= set(node)


def _leaves(target) -> dict:
  out = {}

  def walk(node, path):
    if isinstance(node, dict) and not _is_spec(node):
      for k, v in node.items():
        walk(v, path + (k,))
    else:
      out[path] = node

  walk(target, ())
  return out


def _shape(leaf) -> tuple:
  if _is_spec(leaf):
    return tuple(leaf.get("metadata", {}).get("shape", ()))
  return tuple(leaf.shape)


def _infer_config(leaves: dict, where: str, overrides) -> T5Config:
  def shape(*path):
    if path not in leaves:
      raise CheckpointError(
        f"{where}: no {'/'.join(path)}; not a T5X T5 encoder-decoder "
        "checkpoint (a scanned-layers T5X checkpoint is not read either)."
      )
    return _shape(leaves[path])

  vocab, d_model = shape("token_embedder", "embedding")
  heads, buckets = shape("encoder", "relpos_bias", "rel_embedding")
  query = shape("encoder", "layers_0", "attention", "query", "kernel")
  head_dim = query[2] if len(query) == 3 else query[1] // heads
  gated = ("encoder", "layers_0", "mlp", "wi_0", "kernel") in leaves
  d_ff = shape("encoder", "layers_0", "mlp", "wi_0" if gated else "wi", "kernel")[-1]
  count = lambda stack: len({p[1] for p in leaves if p[0] == stack and _LAYER.match(p[1])})
  fields = dict(
    vocab_size=vocab,
    d_model=d_model,
    num_heads=heads,
    head_dim=head_dim,
    d_ff=d_ff,
    num_layers=count("encoder"),
    num_decoder_layers=count("decoder"),
    relative_attention_num_buckets=buckets,
    mlp_activations=("gelu", "linear") if gated else ("relu",),
    tie_word_embeddings=("decoder", "logits_dense", "kernel") not in leaves,
  )
  fields.update(overrides or {})
  return T5Config(**fields)


def gin_overrides() -> dict:
  """`T5Config.<field>` values bound in gin for the fields shapes cannot tell."""
  import gin

  out = {}
  for field in OVERRIDABLE:
    try:
      out[field] = gin.query_parameter(f"T5Config.{field}")
    except ValueError:
      pass
  if "mlp_activations" in out:
    out["mlp_activations"] = tuple(out["mlp_activations"])
  return out


def read_config(path, overrides=None) -> T5Config:
  """The T5Config the checkpoint's shapes imply, with `overrides` (default: from gin)."""
  step_dir = _step_dir(path)
  overrides = gin_overrides() if overrides is None else overrides
  cfg = _infer_config(_leaves(_contents(step_dir)), str(step_dir), overrides)
  unset = [f for f in OVERRIDABLE[:2] if f not in overrides]
  if unset:
    log.info(
      "%s: %s not in the checkpoint; using %s (override with gin T5Config.<field>).",
      step_dir,
      ", ".join(unset),
      ", ".join(f"{f}={getattr(cfg, f)!r}" for f in unset),
    )
  return cfg


def _spec_with_absolute_path(spec: dict, step_dir: epath.Path) -> dict:
  spec = dict(spec)
  kv = dict(spec["kvstore"])
  relative = kv.get("path") or spec.pop("path", None)
  if not relative:
    raise CheckpointError(f"{step_dir}: a tensorstore spec without a path: {spec}")
  location = step_dir / relative
  text = str(location)
  if text.startswith("gs://"):
    bucket, _, key = text[len("gs://") :].partition("/")
    spec["kvstore"] = {"driver": "gcs", "bucket": bucket, "path": key}
  else:
    spec["kvstore"] = {"driver": "file", "path": text}
  spec.pop("path", None)
  # T5X drops these too: they describe how the array was written, not what to read.
  spec["metadata"] = {
    k: v for k, v in spec.get("metadata", {}).items() if k not in ("chunks", "compressor")
  }
  return spec


def _read(leaf, step_dir: epath.Path, name: str) -> np.ndarray:
  if not _is_spec(leaf):
    return leaf.read()
  import tensorstore as ts

  spec = _spec_with_absolute_path(leaf, step_dir)
  if spec.get("dtype") == "uint16":
    raise CheckpointError(
      f"{step_dir}: {name} is stored as uint16 (pre-version-3 bf16); re-save "
      "the checkpoint with a recent T5X."
    )
  try:
    array = ts.open(spec, open=True).result().read().result()
  except ValueError as e:
    raise CheckpointError(
      f"{step_dir}: cannot read {name} ({e}); the checkpoint is incomplete or corrupt."
    ) from None
  if array.dtype.name == "bfloat16":
    array = array.view(np.dtype(ml_dtypes.bfloat16))
  return np.asarray(array)


def load_params(
  path, cfg=None, shardings=None, *, dtype=np.float32, scan_layers: bool = False, lazy: bool = False
):
  """(T5Config, params) of a T5X checkpoint (numpy, or jax.Arrays placed in `shardings`).

  Parameters are read one at a time; with `shardings` each goes to its devices before the next
  is read (the scanned layout is stacked first). `lazy`: `hf.Deferred` leaves, read on use.
  """
  from t0jax.model import init_params, scan_params

  step_dir = _step_dir(path)
  leaves = _leaves(_contents(step_dir))
  if cfg is None:
    cfg = read_config(step_dir)
  expected = _expected_shapes(cfg, init_params)
  unknown = sorted("/".join(p) for p in set(leaves) - set(expected))
  if unknown:
    raise CheckpointError(
      f"{step_dir}: {len(unknown)} parameter(s) t0jax's T5 does not have, "
      f"e.g. {unknown[:3]}; not a T5X T5 encoder-decoder checkpoint."
    )
  missing = sorted("/".join(p) for p in set(expected) - set(leaves))
  if missing:
    raise CheckpointError(
      f"{step_dir}: {len(missing)} parameter(s) missing, e.g. "
      f"{missing[:3]}; the checkpoint or the config overrides are wrong."
    )
  dtype = hf._np_dtype(dtype)
  stream = shardings is not None and not scan_layers
  params: dict = {}
  for path_, shape in expected.items():
    name = "/".join(path_)
    found = _shape(leaves[path_])
    if found != shape and found not in _flattened(shape):
      raise CheckpointError(
        f"{step_dir}: parameter {name} has shape {list(found)}, expected "
        f"{list(shape)} for the inferred config."
      )
    read = functools.partial(_read_as, leaves[path_], step_dir, name, shape, dtype)
    if lazy:
      value = hf.Deferred(shape, dtype, read)
    elif stream:
      value = hf.place_on_devices(read(), hf._sharding_at(shardings, path_), dtype)
    else:
      value = read()
    node = params
    for key in path_[:-1]:
      node = node.setdefault(key, {})
    node[path_[-1]] = value
  cfg = cfg.replace(scan_layers=scan_layers and not lazy)
  if cfg.scan_layers:
    params = scan_params(params, cfg)
  if shardings is not None and not stream:
    params = jax.tree.map(
      lambda v, s: hf.place_on_devices(np.asarray(v), s, dtype), params, shardings
    )
  return cfg, params


def _flattened(shape: tuple) -> tuple:
  """The 2-D shapes T5X stores a 3-D attention kernel as ([embed, heads * head_dim] or back)."""
  if len(shape) != 3:
    return ()
  return ((shape[0], shape[1] * shape[2]), (shape[0] * shape[1], shape[2]))


def _read_as(leaf, step_dir, name: str, shape: tuple, dtype) -> np.ndarray:
  return np.asarray(_read(leaf, step_dir, name).reshape(shape), dtype=dtype)


def _expected_shapes(cfg: T5Config, init_params) -> dict:
  shapes = jax.eval_shape(lambda: init_params(cfg.replace(scan_layers=False), jax.random.key(0)))
  return {
    tuple(k.key for k in path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]
  }
