"""T5X-style partitioning on flax logical axes and current JAX sharding APIs.

A ('data', 'model') device mesh; a rules table mapping logical axis names to mesh axes; parameter
and optimizer-state shardings derived from the names every parameter is declared with; activation
constraints that take effect because the mesh is set with `jax.set_mesh` (under a plain
`with mesh:` flax's constraints are silently dropped: `meta.global_mesh_defined()` reads the
abstract mesh that only `jax.set_mesh` sets).
"""

import contextlib
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

LogicalRules = Tuple[Tuple[str, Optional[str]], ...]

# T5X's 1-D defaults: the whole sharding policy, readable at a glance.
STANDARD_RULES: LogicalRules = (
  ("batch", "data"),
  ("vocab", "model"),
  ("embed", None),
  ("mlp", "model"),
  ("heads", "model"),
  ("kv", None),
  ("joined_kv", "model"),
  ("relpos_buckets", None),
  ("length", None),
  ("layers", None),
  ("stack", None),
)

# 2-D parameter partitioning (FSDP-like) for 11B-scale models: parameters' `embed` axis is also
# sharded over 'data'. Activations keep `embed` unsharded because 'batch' claims 'data' first
# (a mesh axis is used at most once per array; later rules for the same logical axis apply).
FSDP_RULES: LogicalRules = (("batch", "data"), ("embed", "data")) + tuple(
  r for r in STANDARD_RULES if r[0] != "batch"
)

RULE_SETS = {"standard": STANDARD_RULES, "fsdp": FSDP_RULES}


def get_rules(name_or_rules) -> LogicalRules:
  if isinstance(name_or_rules, str):
    if name_or_rules not in RULE_SETS:
      raise ValueError(
        f"Unknown axis rule set {name_or_rules!r}; choose one of {sorted(RULE_SETS)}"
        " or pass a tuple of (logical, mesh axis) pairs."
      )
    return RULE_SETS[name_or_rules]
  return tuple(tuple(r) for r in name_or_rules)


def create_mesh(num_partitions: int = 1, devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A ('data', 'model') mesh with `num_partitions` devices along 'model'.

  Honoured on every platform, CPU included. `jax.make_mesh` orders devices by the physical
  topology on TPU, so each model-parallel group is a compact submesh of neighbouring chips.
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if num_partitions < 1 or n % num_partitions:
    raise ValueError(f"num_partitions={num_partitions} must divide the number of devices ({n}).")
  return jax.make_mesh(
    (n // num_partitions, num_partitions),
    ("data", "model"),
    axis_types=(AxisType.Auto, AxisType.Auto),
    devices=devices,
  )


class Partitioner:
  """Mesh + rules: shardings for parameters, state and batches, and the context to run in."""

  def __init__(
    self, num_partitions: int = 1, rules="standard", devices: Optional[Sequence[Any]] = None
  ):
    self.mesh = create_mesh(num_partitions, devices)
    self.rules = get_rules(rules)

  @property
  def num_partitions(self) -> int:
    return self.mesh.shape["model"]

  @property
  def data_parallel_size(self) -> int:
    return self.mesh.shape["data"]

  @contextlib.contextmanager
  def activate(self):
    """Enter the mesh (as JAX's current mesh) and the axis rules together."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield self

  def mesh_axes(self, logical_specs):
    """Logical PartitionSpecs -> mesh PartitionSpecs."""
    return nn.logical_to_mesh(logical_specs, self.rules)

  def shardings(self, logical_specs):
    """Logical PartitionSpecs (a pytree) -> NamedShardings on this mesh."""
    return nn.logical_to_mesh_sharding(logical_specs, self.mesh, self.rules)

  def sharding(self, *logical_axes) -> NamedSharding:
    return self.shardings(P(*logical_axes))

  @property
  def batch_sharding(self) -> NamedSharding:
    """Batches: leading (batch) axis over 'data', everything else replicated."""
    return self.sharding("batch")

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def init_params(self, cfg, rng):
    """Random parameters created directly in their shards (never whole on one device).

    Runs outside `activate()`: the dummy init batch of one row cannot be split over 'data'.
    """
    from t0jax.model import init_params, logical_axes  # the model imports nothing from here

    shardings = self.shardings(logical_axes(cfg))
    return jax.jit(lambda r: init_params(cfg, r), out_shardings=shardings)(rng)


def logical_specs_of(boxed_tree):
  """The logical PartitionSpecs of a tree of flax `LogicallyPartitioned` boxes."""
  return nn.get_partition_spec(boxed_tree)
