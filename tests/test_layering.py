"""The folders follow the data flow (docs/DESIGN.md): no module imports from a stage further
down, and no two modules import each other at import time."""

import ast
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# package -> the t0jax packages it may import (its own always). `cli` is the top: anything.
ALLOWED = {
  "prompts": set(),
  "data": {"prompts"},
  "catalog": {"prompts", "data"},
  "model": {"data"},  # the vocabulary's PAD/EOS ids only (checked below)
  "parallel": {"model"},
  "checkpoints": {"data", "model", "parallel"},
  "evaluate": {"prompts", "data", "catalog", "model", "parallel", "checkpoints"},
  "train": {"data", "catalog", "model", "parallel", "checkpoints", "evaluate"},
}
# `python -m t0jax.train` is a command front, like everything in cli/.
FRONTS = {"t0jax/train/__main__.py", "t0jax/__main__.py"}


def _modules():
  for path in sorted((ROOT / "t0jax").rglob("*.py")) + sorted((ROOT / "tasks").rglob("*.py")):
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("tasks/"):
      package, name = "catalog", "t0jax.catalog." + rel[len("tasks/") : -3].replace("/", ".")
    else:
      package = Path(rel).parts[1].removesuffix(".py")
      name = rel[:-3].replace("/", ".")
    yield rel, package, name.removesuffix(".__init__"), ast.parse(path.read_text())


def _imports(tree, top_level_only: bool = False):
  nodes = tree.body if top_level_only else ast.walk(tree)
  for node in nodes:
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      yield node.module
      yield from (f"{node.module}.{a.name}" for a in node.names)


def _package(module: str):
  parts = module.split(".")
  return parts[1] if parts[0] == "t0jax" and len(parts) > 1 else None


def test_no_module_imports_from_a_stage_further_down_the_data_flow():
  wrong = []
  for rel, package, _, tree in _modules():
    if package == "cli" or rel in FRONTS or package not in ALLOWED:
      continue
    for module in _imports(tree):
      target = _package(module)
      if target is None or target == package or target not in ALLOWED | {"cli": 0}:
        continue
      if target not in ALLOWED[package]:
        wrong.append(f"{rel} imports {module}")
      elif package == "model" and not module.startswith("t0jax.data.vocab"):
        wrong.append(f"{rel} imports {module} (model/ may use only the vocabulary's ids)")
  assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules_at_import_time():
  names = {name for _, _, name, _ in _modules()}
  graph = collections.defaultdict(set)
  for _, _, name, tree in _modules():
    for node in tree.body:
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # `from package import submodule` imports the submodule (after the package's __init__,
        # which is not a cycle); `from module import name` imports the module.
        subs = [f"{node.module}.{a.name}" for a in node.names]
        targets = [s for s in subs if s in names] or [node.module]
      else:
        continue
      graph[name].update(t for t in targets if t in names and t != name)
  state, cycles = {}, []

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = "done"

  for node in sorted(names):
    if node not in state:
      visit(node, [node])
  assert not cycles, "\n".join(cycles)
