"""gin plumbing shared by the commands: finding gin files, `--gin.NAME=VALUE` flags, and errors
that name the bad binding with the closest valid names."""
import difflib
import os
import re
from pathlib import Path
from typing import List, Sequence

import gin

from t0jax.model.config import T5Config

# Experiments configure the model as T5X users expect: `T5Config.d_model = 2048`.
gin.external_configurable(T5Config, name="T5Config", module="t0jax.model")


class GinConfigError(ValueError):
  pass


def gin_root() -> Path:
  """The folder of t0jax's gin files: `gin/` in a checkout, `t0jax/gin/` when installed. Its
  parent is a search path, so `gin/...` names resolve the same way in both."""
  package = Path(__file__).resolve().parent.parent  # t0jax/cli -> t0jax
  checkout = package.parent / "gin"
  if checkout.is_dir() and (package.parent / "setup.py").is_file():
    return checkout
  return package / "gin"


def search_paths() -> List[str]:
  root = gin_root()
  return [os.getcwd(), str(root.parent), str(root)]


def resolve_gin_file(name: str) -> str:
  for base in search_paths():
    path = Path(base) / name
    if path.is_file():
      return str(path)
  if Path(name).is_file():
    return name
  known = sorted(str(p.relative_to(gin_root().parent)) for p in gin_root().rglob("*.gin"))
  close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
  raise GinConfigError(f"gin file {name!r} not found (looked in {', '.join(search_paths())})."
                       + (f" Did you mean: {', '.join(close)}?" if close else
                          f" Available: {', '.join(known)}"))


def _binding_from_flag(flag: str) -> str:
  name, _, value = flag.partition("=")
  if not _:
    raise GinConfigError(f"--gin.{flag}: expected --gin.NAME=VALUE.")
  value = value.strip()
  try:
    gin.config.parse_value(value)
  except Exception:  # noqa: BLE001 - a bare word is a string for convenience: t0_train
    if not value.startswith(("@", "%")) and re.fullmatch(r"[\w./:-]+", value):
      value = repr(value)
  return f"{name.strip()} = {value}"


def _referenced_macros(files: Sequence[str]) -> set:
  refs = set()
  for path in files:
    refs |= set(re.findall(r"%([A-Za-z_][\w.]*)", Path(path).read_text()))
  return refs


def _explain(err: Exception, files: Sequence[str]) -> str:
  msg = str(err)
  m = re.search(r"No configurable matching '([^']+)'", msg)
  if m:
    name = m.group(1)
    candidates = []
    for selector, _ in gin.config._REGISTRY.items():  # gin has no public listing
      candidates += [selector, selector.split(".")[-1]]
    close = difflib.get_close_matches(name.split(".")[-1], candidates, n=3)
    return f"Unknown gin configurable {name!r}." + (
        f" Closest: {', '.join(dict.fromkeys(close))}." if close else "")
  m = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", msg)
  if m:
    fn, param = m.groups()
    configurable = gin.config._REGISTRY.get_match(fn)
    params = []
    if configurable is not None:
      import inspect
      params = list(inspect.signature(configurable.wrapped).parameters)
    close = difflib.get_close_matches(param, params, n=3)
    return f"Unknown gin parameter {fn}.{param}." + (
        f" Closest: {', '.join(close)}." if close else f" Valid: {', '.join(params)}.")
  return msg


def parse(gin_files: Sequence[str], gin_flags: Sequence[str], finalize: bool = True) -> None:
  """Parse gin files and `NAME=VALUE` bindings; unknown names fail with suggestions."""
  for path in search_paths():
    gin.add_config_file_search_path(path)
  files = [resolve_gin_file(f) for f in gin_files]
  bindings = [_binding_from_flag(f) for f in gin_flags]
  # A macro binding nobody reads is a typo that would otherwise be silently ignored.
  known = _referenced_macros(files + _included_files(files))
  for b in bindings:
    name = b.split("=", 1)[0].strip()
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and name not in known:
      close = difflib.get_close_matches(name, sorted(known), n=3)
      raise GinConfigError(f"--gin.{name}: no gin file reads the macro {name}."
                           + (f" Closest: {', '.join(close)}." if close else ""))
  try:
    gin.parse_config_files_and_bindings(files, bindings, finalize_config=finalize)
  except (ValueError, KeyError, TypeError, IOError) as e:
    raise GinConfigError(_explain(e, files)) from e


def _included_files(files: Sequence[str]) -> List[str]:
  out, todo = [], list(files)
  while todo:
    text = Path(todo.pop()).read_text()
    for inc in re.findall(r"^include\s+['\"]([^'\"]+)['\"]", text, flags=re.M):
      path = resolve_gin_file(inc)
      if path not in out:
        out.append(path)
        todo.append(path)
  return out


def split_gin_args(argv: Sequence[str]):
  """Pull `--gin_file=F` / `--gin_file F` and `--gin.X=Y` out of argv; return (files, flags, rest)."""
  files, flags, rest = [], [], []
  it = iter(argv)
  for a in it:
    if a.startswith("--gin_file="):
      files.append(a.split("=", 1)[1])
    elif a == "--gin_file":
      files.append(next(it))
    elif a.startswith("--gin."):
      flags.append(a[len("--gin."):])
    else:
      rest.append(a)
  return files, flags, rest
