"""gin for the commands: finding gin files, T5X's gin flags, T5X names translated or refused
(t0jax/cli/t5x_names.py), and every gin mistake turned into one line that names the file and
line (or the flag) and what to do."""

import contextlib
import difflib
import importlib
import inspect
import logging
import os
import re
import tokenize
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import gin

from t0jax.cli import t5x_names
from t0jax.cli.common import GinConfigError
import t0jax.model.config  # noqa: F401 - registers `T5Config` with gin

log = logging.getLogger("t0jax.gin")
_MACRO = re.compile(r"[A-Z][A-Z0-9_]*")


def gin_root() -> Path:
  """The folder of t0jax's gin files: `gin/` in a checkout, `t0jax/gin/` when installed. Its
  parent is a search path, so `gin/...` names resolve the same way in both."""
  package = Path(__file__).resolve().parent.parent  # t0jax/cli -> t0jax
  checkout = package.parent / "gin"
  if checkout.is_dir() and (package.parent / "setup.py").is_file():
    return checkout
  return package / "gin"


_extra_search_paths: List[str] = []


def add_search_paths(paths: Sequence[str]) -> None:
  """`--gin_search_paths`: searched before t0jax's own folders, in the order given."""
  for p in paths:
    p = os.path.abspath(os.path.expanduser(p))
    if not os.path.isdir(p):
      raise GinConfigError(f"--gin_search_paths {p}: no such directory.")
    if p not in _extra_search_paths:
      _extra_search_paths.append(p)


def search_paths() -> List[str]:
  root = gin_root()
  return list(dict.fromkeys(_extra_search_paths + [os.getcwd(), str(root.parent), str(root)]))


def resolve_gin_file(name: str, where: str = "") -> str:
  if os.path.isabs(name) and os.path.isfile(name):
    return name
  for base in search_paths():
    path = Path(base) / name
    if path.is_file():
      return str(path)
  known = sorted(str(p.relative_to(gin_root().parent)) for p in gin_root().rglob("*.gin"))
  close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
  raise GinConfigError(
    f"{where or '--gin_file'}: gin file {name!r} not found (looked in "
    f"{', '.join(search_paths())}; add its folder with --gin_search_paths)."
    + (f" Did you mean: {', '.join(close)}?" if close else "")
  )


# --- bindings from flags -------------------------------------------------------------------------


def _binding_from_flag(flag: str) -> str:
  name, eq, value = flag.partition("=")
  if not eq:
    raise GinConfigError(f"--gin.{flag}: expected --gin.NAME=VALUE.")
  value = value.strip()
  try:
    gin.config.parse_value(value)
  except Exception:  # noqa: BLE001 - a bare word is a string for convenience: t0_train
    if not value.startswith(("@", "%")) and re.fullmatch(r"[\w./:-]+", value):
      value = repr(value)
  return f"{name.strip()} = {value}"


def _translate(label: str, binding: str, defined: set) -> str:
  """A T5X binding from the command line: translated when t0jax means the same, else refused
  with the t0jax spelling. Names the gin files define are t0jax's own and left alone."""
  name, _, value = binding.partition("=")
  name = name.strip()
  if name in defined:
    return binding
  row = t5x_names.lookup(name)
  if row is None:
    return binding
  if row.action != t5x_names.ACCEPT:
    raise GinConfigError(f"{label}: {t5x_names.explain(row)}.")
  translated = t5x_names.binding(row, value.strip())
  log.info("%s: T5X's %s is t0jax's %s; using `%s`.", label, row.t5x, row.t0jax, translated)
  return translated


# --- what the gin files define and read ----------------------------------------------------------


def _file_texts(files: Sequence[str]) -> List[Tuple[str, str]]:
  """(path, text) of the files and everything they include, in the order gin reads them."""
  out, seen = [], set()

  def visit(path):
    if path in seen:
      return
    seen.add(path)
    text = Path(path).read_text()
    for i, line in enumerate(text.splitlines(), 1):
      m = re.match(r"\s*include\s+['\"]([^'\"]+)['\"]", line)
      if m:
        visit(resolve_gin_file(m.group(1), where=f"{path}:{i}"))
    out.append((path, text))

  for f in files:
    visit(f)
  return out


def _macros(texts, pattern: str) -> set:
  found = set()
  for _, text in texts:
    found |= set(re.findall(pattern, text, flags=re.M))
  return found


def _where_set(name: str, texts, labelled_bindings) -> str:
  """The flag, or else the last gin file line, that gives `name` its value."""
  for label, binding in reversed(labelled_bindings):
    if binding.split("=", 1)[0].strip() == name:
      return label
  for path, text in reversed(texts):
    lines = text.splitlines()
    for i in range(len(lines), 0, -1):
      if re.match(rf"\s*{re.escape(name)}\s*=", lines[i - 1]):
        return f"{path}:{i}"
  return name


# --- errors --------------------------------------------------------------------------------------


def _location(msg: str, labelled_bindings) -> Tuple[str, str]:
  """gin's 'In file "F", line N' (or bindings line N) -> ('F:N', message without it)."""
  first = msg.strip().splitlines()[0] if msg.strip() else msg
  m = re.search(r'In file "([^"]+)", line (\d+)', msg)
  if m:
    return f"{m.group(1)}:{m.group(2)}", first
  m = re.search(r"In bindings string,? line (\d+)", msg)
  if m and 0 < int(m.group(1)) <= len(labelled_bindings):
    return labelled_bindings[int(m.group(1)) - 1][0], first
  return "", first


def _closest_configurable(name: str) -> List[str]:
  candidates = []
  for selector, _ in gin.config._REGISTRY.items():  # gin has no public listing
    candidates += [selector, selector.split(".")[-1]]
  return list(dict.fromkeys(difflib.get_close_matches(name.split(".")[-1], candidates, n=3)))


def _explain(err: BaseException, texts, labelled_bindings) -> str:
  msg = str(err)
  where, first = _location(msg, labelled_bindings)
  where = where + ": " if where else ""
  m = re.search(r"No configurable matching '([^']+)'", msg)
  if m:
    name = m.group(1)
    line = re.search(r"\n\s+(\S[^\n]*)$", msg.rstrip())
    full = line.group(1).split("=")[0].strip() if line else name
    row = t5x_names.lookup(full)
    if row is not None:
      return f"{where}Unknown gin configurable {name!r}: {t5x_names.explain(row)}."
    row = t5x_names.lookup_prefix(name)
    if row is not None:
      return (
        f"{where}Unknown gin configurable {name!r}: t0jax spells T5X's names differently "
        f"(e.g. {row.t5x} -> {row.t0jax}); the table is in docs/t5x.md."
      )
    close = _closest_configurable(name)
    return f"{where}Unknown gin configurable {name!r}." + (
      f" Closest: {', '.join(close)}."
      if close
      else " Check the spelling, or import the module that defines it in the gin file."
    )
  m = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", msg)
  if m:
    fn, param = m.groups()
    row = t5x_names.lookup(f"network.{fn}.{param}") if fn == "T5Config" else None
    if row is not None and row.action == t5x_names.ACCEPT:
      return f"{where}T5Config has no field {param!r}: {t5x_names.explain(row)}."
    configurable = gin.config._REGISTRY.get_match(fn)
    params = list(inspect.signature(configurable.wrapped).parameters) if configurable else []
    close = difflib.get_close_matches(param, params, n=3)
    return f"{where}Unknown gin parameter {fn}.{param}." + (
      f" Closest: {', '.join(close)}." if close else f" Valid: {', '.join(params)}."
    )
  m = re.search(r"No bindings specified for '([^'/]+)/gin.macro'", msg)
  if m:
    return (
      f"{_where_used(m.group(1), texts)}the macro {m.group(1)} is read (%{m.group(1)}) but "
      f"never set: set it in a gin file or with --gin.{m.group(1)}=VALUE."
    )
  if isinstance(err, ModuleNotFoundError):
    return f"{where}cannot import {err.name!r}: install it or fix the import line."
  if isinstance(err, SyntaxError) and getattr(err, "filename", None):
    return f"{err.filename}:{err.lineno}: gin syntax error: {err.msg.rstrip('.')}."
  return f"{where}{first}"


def _where_used(macro: str, texts) -> str:
  for path, text in texts:
    for i, line in enumerate(text.splitlines(), 1):
      if re.search(rf"%{re.escape(macro)}\b", line):
        return f"{path}:{i}: "
  return ""


def _unfinished_statement(texts) -> str:
  """tokenize's 'EOF in multi-line statement' comes without a file: find the file, and the line
  of the bracket or string left open."""
  import io

  for path, text in texts:
    opened = []
    try:
      for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.OP and tok.string in "([{":
          opened.append(tok.start[0])
        elif tok.type == tokenize.OP and tok.string in ")]}" and opened:
          opened.pop()
    except (tokenize.TokenError, SyntaxError) as e:
      line = (
        opened[-1] if opened else (e.args[1][0] if isinstance(e, tokenize.TokenError) else e.lineno)
      )
      return f"{path}:{line}: gin syntax error: a bracket or string opened here is never closed."
  return "gin syntax error: a bracket or string is never closed."


class _NoFalsePathErrors(logging.Filter):
  """gin probes every search path for every file, also as a Python package; each miss logs
  'ERROR Path not found' on the root logger although a later path finds the file."""

  def filter(self, record):
    return not str(record.msg).startswith("Path not found")


@contextlib.contextmanager
def _quiet_probes():
  f = _NoFalsePathErrors()
  root = logging.getLogger()
  root.addFilter(f)
  try:
    yield
  finally:
    root.removeFilter(f)


# --- value checks --------------------------------------------------------------------------------


def _int_at_least(low: int, none_ok: bool = False):
  def check(v):
    if v is None and none_ok:
      return None
    if isinstance(v, bool) or not isinstance(v, int):
      return f"must be an integer >= {low}" + (" or None" if none_ok else "")
    return None if v >= low else f"must be >= {low}"

  return check


def _fraction(v):
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    return "must be a number in [0, 1)"
  return None if 0 <= v < 1 else "must be in [0, 1)"


def _non_negative(v):
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    return "must be a number >= 0"
  return None if v >= 0 else "must be >= 0"


def _normalizing_factor(v):
  if v is None or v == "NUM_REAL_TARGET_TOKENS":
    return None
  if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
    return None
  return "must be 'NUM_REAL_TARGET_TOKENS', a positive number, or None"


def _boolean(v):
  return None if isinstance(v, bool) else "must be True or False"


def _seed(v):
  if v is None:
    return (
      "must be an integer: t0jax replays the data order on resume, so the seed is fixed "
      "(T5X's None draws one)"
    )
  return _int_at_least(0)(v)


def _string(v):
  return None if isinstance(v, str) and v else "must be a non-empty string"


def _optional_string(v):
  return None if v is None else _string(v)


def _feature_lengths(v):
  if v is None:
    return None
  if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
    return "must be a dict such as {'inputs': 1024, 'targets': 256}"
  bad = [k for k, n in v.items() if isinstance(n, bool) or not isinstance(n, int) or n < 1]
  return f"must give positive integer lengths ({', '.join(bad)})" if bad else None


# Macros whose values are checked after parsing; a macro no file defines is skipped.
CHECKS = {
  "TRAIN_STEPS": _int_at_least(1, none_ok=True),
  "TRAIN_STEPS_RELATIVE": _int_at_least(1, none_ok=True),
  "BATCH_SIZE": _int_at_least(1),
  "EVAL_BATCH_SIZE": _int_at_least(1),
  "CHECKPOINT_PERIOD": _int_at_least(1),
  "LOG_PERIOD": _int_at_least(1),
  "EVAL_PERIOD": _int_at_least(0),
  "EVAL_STEPS": _int_at_least(1),
  "KEEP_CHECKPOINTS": _int_at_least(1, none_ok=True),
  "NUM_PARTITIONS": _int_at_least(1),
  "NUM_MICROBATCHES": _int_at_least(1),
  "NUM_VIRTUAL_SHARDS": _int_at_least(1),
  "MAX_EXAMPLES": _int_at_least(1, none_ok=True),
  "EVAL_MAX_EXAMPLES": _int_at_least(1, none_ok=True),
  "DROPOUT_RATE": _fraction,
  "LABEL_SMOOTHING": _fraction,
  "Z_LOSS": _non_negative,
  "LEARNING_RATE": _non_negative,
  "LOSS_NORMALIZING_FACTOR": _normalizing_factor,
  "USE_CACHED_TASKS": _boolean,
  "RANDOM_SEED": _seed,
  "SEED": _seed,
  "MIXTURE_OR_TASK_NAME": _string,
  "MODEL_DIR": _string,
  "INITIAL_CHECKPOINT_PATH": _optional_string,
  "TASK_FEATURE_LENGTHS": _feature_lengths,
}


def _macro_value(name: str):
  return gin.query_parameter(f"{name}/macro.value")


def _check_values(defined: set, texts, labelled) -> None:
  for name, check in CHECKS.items():
    if name not in defined:
      continue
    try:
      value = _macro_value(name)
    except (ValueError, KeyError):
      continue
    # A reference (SEED = %RANDOM_SEED) is checked where its value is written.
    if value is gin.REQUIRED or isinstance(value, gin.config.ConfigurableReference):
      continue
    problem = check(value)
    if problem:
      raise GinConfigError(f"{_where_set(name, texts, labelled)}: {name} = {value!r} {problem}.")


def _import_task_module(defined: set, texts, labelled) -> Optional[str]:
  """MIXTURE_OR_TASK_MODULE (T5X's run macro): imported through gin, so the data process,
  which imports every module the gin configuration imports, registers the same tasks."""
  if "MIXTURE_OR_TASK_MODULE" not in defined:
    return None
  try:
    module = _macro_value("MIXTURE_OR_TASK_MODULE")
  except (ValueError, KeyError):
    return None
  if module is None or module is gin.REQUIRED:
    return None
  where = _where_set("MIXTURE_OR_TASK_MODULE", texts, labelled)
  if not isinstance(module, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", module):
    raise GinConfigError(
      f"{where}: MIXTURE_OR_TASK_MODULE = {module!r} must be a module name "
      "such as 'my_project.tasks'."
    )
  try:
    importlib.import_module(module)
  except ImportError as e:
    raise GinConfigError(
      f"{where}: MIXTURE_OR_TASK_MODULE {module!r} cannot be imported ({e}); "
      "install it or put its folder on PYTHONPATH."
    ) from e
  gin.parse_config(f"import {module}")  # recorded in gin's imports for the data process
  return module


def _check_unread_macros(texts, read: set) -> None:
  """A macro a gin file sets and nothing reads is a typo or a T5X macro t0jax spells otherwise;
  gin itself would ignore it silently."""
  for path, text in texts:
    for i, line in enumerate(text.splitlines(), 1):
      m = re.match(r"\s*([A-Z][A-Z0-9_]*)\s*=", line)
      if not m or m.group(1) in read or m.group(1) in COMMAND_MACROS:
        continue
      name = m.group(1)
      row = t5x_names.lookup(name)
      if row is not None:
        raise GinConfigError(f"{path}:{i}: {t5x_names.explain(row)}.")
      close = difflib.get_close_matches(name, sorted(read), n=3)
      raise GinConfigError(
        f"{path}:{i}: the macro {name} is set but no gin file reads it."
        + (
          f" Closest: {', '.join(close)}."
          if close
          else " Remove it, or bind it to a parameter (X.param = %" + name + ")."
        )
      )


# --- parsing -------------------------------------------------------------------------------------

# Macros the commands themselves read (not through a gin file).
COMMAND_MACROS = {"MIXTURE_OR_TASK_MODULE"}


def parse(
  gin_files: Sequence[str],
  gin_flags: Sequence[str],
  finalize: bool = True,
  flag_labels: Optional[Sequence[str]] = None,
) -> None:
  """Parse gin files and `NAME=VALUE` bindings; every mistake is a GinConfigError of one line.

  `flag_labels` name each binding's flag in errors (default `--gin.NAME`)."""
  for path in search_paths():
    if path not in gin.config._LOCATION_PREFIXES:  # gin adds duplicates otherwise
      gin.add_config_file_search_path(path)
  files = [resolve_gin_file(f) for f in gin_files]
  texts = _file_texts(files)
  defined = _macros(texts, r"^\s*([A-Z][A-Z0-9_]*)\s*=") | COMMAND_MACROS
  read = _macros(texts, r"%([A-Za-z_][\w.]*)")
  _check_unread_macros(texts, read)
  known = read | defined
  labelled = []
  for i, flag in enumerate(gin_flags):
    label = flag_labels[i] if flag_labels else f"--gin.{flag.split('=', 1)[0].strip()}"
    binding = _translate(label, _binding_from_flag(flag), defined)
    labelled.append((label, binding))
  for label, b in labelled:
    name = b.split("=", 1)[0].strip()
    if _MACRO.fullmatch(name) and name not in known:
      close = difflib.get_close_matches(name, sorted(known), n=3)
      raise GinConfigError(
        f"{label}: no gin file reads the macro {name}."
        + (f" Closest: {', '.join(close)}." if close else "")
      )
  try:
    with _quiet_probes():
      gin.parse_config_files_and_bindings(files, [b for _, b in labelled], finalize_config=False)
    _import_task_module(defined, texts, labelled)
    _check_values(defined, texts, labelled)
    if finalize:
      gin.finalize()
  except GinConfigError:
    raise
  except tokenize.TokenError as e:
    raise GinConfigError(_unfinished_statement(texts)) from e
  except (ValueError, KeyError, TypeError, IOError, SyntaxError, ImportError, NameError) as e:
    raise GinConfigError(_explain(e, texts, labelled)) from e


def split_gin_args(argv: Sequence[str]):
  """Pull `--gin_file=F` / `--gin_file F` and `--gin.X=Y` out of argv; return (files, flags, rest).
  Kept for callers outside the commands; the commands use t0jax.cli.common."""
  files, flags, rest = [], [], []
  it = iter(argv)
  for a in it:
    if a.startswith("--gin_file="):
      files.append(a.split("=", 1)[1])
    elif a == "--gin_file":
      files.append(next(it))
    elif a.startswith("--gin."):
      flags.append(a[len("--gin.") :])
    else:
      rest.append(a)
  return files, flags, rest
