"""What every `t0jax` command shares: its argparse parser, T5X's gin and data flags, multi-host
start-up, logging, and the exit-code convention.

Exit codes: 0 done; 1 a check failed (the run does not fit, the data is unavailable); 2 bad input
(a flag, a gin file, a checkpoint path). Every failure prints ONE line, `t0jax CMD: message`.

  def main(argv=None):
    return common.run("train", argv, _parser, _body, gin=True, data=True, multihost=True)

Adding a data-location flag to every command that reads tasks is one line in DATA_FLAGS.
"""

import argparse
import dataclasses
import importlib
import logging
import re
import sys
from typing import Callable, List, Optional, Sequence, Tuple, Union


class UsageError(ValueError):
  """Bad input the user can fix: exit 2."""


class GinConfigError(UsageError):
  """A gin file or binding that cannot be used; the message names the file and line or flag."""


class CheckFailed(RuntimeError):
  """The input is valid but the check it asked for failed (does not fit, no data): exit 1."""


# --- data-location flags -------------------------------------------------------------------------


def _set_tfds_data_dir(path: str) -> None:
  import_tensorflow()
  from t0jax.data import settings

  settings.set_tfds_data_dir(path)  # the catalogue's TFDS sources, also in the data process
  import seqio

  seqio.set_tfds_data_dir_override(path)  # T5X's meaning: every seqio.TfdsDataSource


def _add_seqio_cache_dirs(dirs: List[str]) -> None:
  import_tensorflow()
  import seqio

  seqio.add_global_cache_dirs(dirs)  # T5X's meaning: searched for cached tasks


@dataclasses.dataclass(frozen=True)
class DataFlag:
  flag: str
  metavar: str
  help: str
  apply: Union[str, Callable]  # a function, or "module:function", called with the value
  is_list: bool = False  # comma-separated and repeatable, values gathered into one list

  def set(self, value) -> None:
    fn = self.apply
    if isinstance(fn, str):
      module, _, name = fn.partition(":")
      fn = getattr(importlib.import_module(module), name)
    fn(value)


# Flags of the commands that read SeqIO tasks (train, eval, infer, tasks), applied in this order
# before any task is read.
DATA_FLAGS: Tuple[DataFlag, ...] = (
  DataFlag("--tfds_data_dir", "DIR", "TFDS data directory (T5X's flag)", _set_tfds_data_dir),
  DataFlag(
    "--seqio_additional_cache_dirs",
    "DIR[,DIR]",
    "more folders searched for cached SeqIO tasks (T5X's flag; repeatable)",
    _add_seqio_cache_dirs,
    is_list=True,
  ),
  DataFlag(
    "--p3_dir",
    "DIR",
    "local copy of bigscience/P3: T0's tasks read from it, already tokenized (T0JAX_P3_DIR)",
    "t0jax.data.settings:set_p3_dir",
  ),
  DataFlag(
    "--promptsource_dir",
    "DIR",
    "promptsource template tree: T0's datasets take T0's "
    "own prompts and mixtures are registered as t-zero did (T0JAX_PROMPTSOURCE; "
    "`t0jax prompts fetch` gets it)",
    "t0jax.data.settings:set_promptsource_dir",
  ),
)


# --- parser --------------------------------------------------------------------------------------


def parser(
  command: str,
  description: str,
  *,
  gin: bool = False,
  data: bool = False,
  multihost: bool = False,
  verbose: bool = True,
  epilog: Optional[str] = None,
) -> argparse.ArgumentParser:
  """`t0jax COMMAND`'s parser with the shared flags it takes; the command adds its own."""
  p = argparse.ArgumentParser(prog=f"t0jax {command}", description=description, epilog=epilog)
  if gin:
    g = p.add_argument_group("gin (T5X's flags)")
    g.add_argument(
      "--gin_file",
      action="append",
      default=[],
      metavar="FILE",
      help="gin file, repeatable, read in order",
    )
    g.add_argument(
      "--gin_bindings",
      action="append",
      default=[],
      metavar="'NAME = VALUE'",
      help="one binding, repeatable (same as --gin.NAME=VALUE)",
    )
    g.add_argument(
      "--gin_search_paths",
      action="append",
      default=[],
      metavar="DIR[,DIR]",
      help="folders searched for gin files and their includes (repeatable)",
    )
    g.description = (
      "--gin.NAME=VALUE binds a macro or a parameter (repeatable); T5X names "
      "t0jax spells differently are translated or refused (docs/t5x.md)."
    )
  if data:
    g = p.add_argument_group("data")
    for f in DATA_FLAGS:
      g.add_argument(
        f.flag, metavar=f.metavar, help=f.help, action="append" if f.is_list else "store"
      )
  if verbose:
    p.add_argument("--verbose", action="store_true", help="log progress (INFO)")
  if multihost:
    from t0jax.parallel import distributed

    distributed.add_flags(p)
  return p


def split_gin_dot_flags(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
  """(`--gin.NAME=VALUE` flags without the prefix, the other arguments): argparse has no way to
  declare a flag family."""
  flags, rest = [], []
  for a in argv:
    if a.startswith("--gin."):
      flags.append(a[len("--gin.") :])
    else:
      rest.append(a)
  return flags, rest


def macro_bindings(args: argparse.Namespace, flags_to_macros) -> List[Tuple[str, str]]:
  """(flag, 'MACRO=value') for each of a command's flags that was given: flags that set a gin
  macro (`--checkpoint` -> CHECKPOINT_PATH); gin's own macros fill the rest."""
  out = []
  for flag, macro in flags_to_macros:
    value = getattr(args, flag.lstrip("-"))
    if value is not None:
      out.append((flag, f"{macro}={value!r}"))
  return out


def _comma_list(values: Optional[Sequence[str]]) -> List[str]:
  return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


# --- the run -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Context:
  """What a command's body gets: its flags, its gin flags, and this process's place."""

  command: str
  args: argparse.Namespace
  gin_files: List[str]
  gin_flags: List[Tuple[str, str]]  # (label for errors, 'NAME=VALUE')
  process_id: int = 0
  is_multiprocess: bool = False

  @property
  def primary(self) -> bool:
    return self.process_id == 0

  @property
  def prefix(self) -> str:
    return f"[process {self.process_id}] " if self.is_multiprocess else ""

  def parse_gin(
    self,
    defaults: Sequence[str] = (),
    bindings: Sequence[Union[str, Tuple[str, str]]] = (),
    finalize: bool = True,
    require_file: bool = False,
  ) -> None:
    """gin: `defaults` files, then --gin_file; the command's own `bindings` ('NAME=VALUE', or
    (the flag that gave it, 'NAME=VALUE') for errors), then --gin_bindings and
    --gin.NAME=VALUE, so the user's bindings win."""
    import gin
    from t0jax.cli import gin_flags  # gin's half: imports JAX (the model config), so on use

    if require_file and not self.gin_files:
      raise UsageError(
        "at least one --gin_file is required (e.g. --gin_file=gin/experiments/demo.gin)."
      )
    gin.clear_config()  # the command owns gin's configuration (main may run twice in a process)
    flags = [
      b if isinstance(b, tuple) else (f"--gin.{b.split('=', 1)[0].strip()}", b) for b in bindings
    ] + self.gin_flags
    gin_flags.parse(
      list(defaults) + self.gin_files,
      [f for _, f in flags],
      finalize=finalize,
      flag_labels=[label for label, _ in flags],
    )

  def parse_gin_if_given(self) -> None:
    """`parse_gin` when any --gin_file or gin flag was given, for commands whose gin is optional
    (predict, convert: T5Config fields a T5X checkpoint cannot tell); nothing otherwise."""
    if self.gin_files or self.gin_flags:
      self.parse_gin()


def _gin_flags(args, dot_flags) -> List[Tuple[str, str]]:
  out = [(f"--gin_bindings {b!r}", b) for b in getattr(args, "gin_bindings", [])]
  out += [(f"--gin.{f.split('=', 1)[0]}", f) for f in dot_flags]
  return out


def _apply_data_flags(args) -> None:
  for f in DATA_FLAGS:
    value = getattr(args, f.flag.lstrip("-"), None)
    if f.is_list:
      value = _comma_list(value)
    if value:
      f.set(value)


def _configure_logging(verbose: bool, process_id: int, multiprocess: bool) -> None:
  prefix = f"[process {process_id}] " if multiprocess else ""
  # Only process 0 logs below errors; the others would repeat every line.
  level = (logging.INFO if verbose else logging.WARNING) if process_id == 0 else logging.ERROR
  logging.basicConfig(level=level, format=f"{prefix}%(levelname)s %(name)s: %(message)s")
  logging.getLogger().setLevel(level)  # also when a handler exists (a second command in-process)
  for noisy in ("absl", "jax._src.xla_bridge", "tensorflow"):
    logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def one_line(error: BaseException) -> str:
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  if type(error).__str__ is KeyError.__str__ and error.args:  # KeyError quotes its message
    text = str(error.args[0])
  # gin appends where the configurable was called; the message already names the culprit.
  text = re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)\s*$", "", text)
  return " ".join(text.split())


def import_tensorflow() -> None:
  """TensorFlow, imported quietly (its C++ start-up lines are not ours to print), before the
  catalogue or seqio import it. For the commands that read SeqIO tasks."""
  from t0jax.data.tf_setup import import_tensorflow as quiet_import

  quiet_import()


# Errors every command reports as bad input (exit 2).
BAD_INPUT: Tuple[type, ...] = (UsageError, ValueError, KeyError, FileNotFoundError, PermissionError)


def run(
  command: str,
  argv: Optional[Sequence[str]],
  make_parser: Callable[[], argparse.ArgumentParser],
  body: Callable[[Context], Optional[int]],
  *,
  gin: bool = False,
  multihost: bool = False,
  bad_input: Tuple[type, ...] = (),
  failed: Tuple[type, ...] = (),
) -> int:
  """Parse `argv`, start the process group, set up logging and data flags, run `body`, and turn
  its errors into one line and an exit code (`bad_input`: 2, `failed` and CheckFailed: 1)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  dot_flags, rest = split_gin_dot_flags(argv) if gin else ([], argv)
  p = make_parser()
  try:
    args = p.parse_args(rest)
  except SystemExit as exit_:  # --help (0) or bad usage (2), printed by argparse
    return int(exit_.code or 0)
  group = None
  prog = f"t0jax {command}"
  try:
    if multihost:
      from t0jax.parallel import distributed

      group = distributed.initialize_from_args(args)  # before anything touches a device
    pid = group.process_id if group else 0
    multi = bool(group and group.is_multiprocess)
    _configure_logging(getattr(args, "verbose", False), pid, multi)
    if gin:
      import gin as gin_config

      # The command owns gin's configuration; one run earlier in this process (a test, a
      # notebook) left it locked, and the command's imports register configurables.
      gin_config.clear_config()
      from t0jax.cli import gin_flags

      gin_flags.add_search_paths(_comma_list(args.gin_search_paths))
    _apply_data_flags(args)
    ctx = Context(
      command,
      args,
      list(getattr(args, "gin_file", []) or []),
      _gin_flags(args, dot_flags) if gin else [],
      pid,
      multi,
    )
    code = int(body(ctx) or 0)
  except BrokenPipeError:  # the reader (`| head`) stopped early: not an error of ours
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 0
  except (UsageError,) + tuple(bad_input) as e:
    code = _report(prog, group, e, 2)
  except (CheckFailed,) + tuple(failed) as e:
    code = _report(prog, group, e, 1)
  except BAD_INPUT + _distributed_error() as e:
    code = _report(prog, group, e, 2)
  if group is not None:
    from t0jax.parallel import distributed

    # Passes JAX's shutdown barrier now: left to interpreter exit, a multi-process run waits
    # about a minute there for peers that have already gone.
    return distributed.finish(group, code)
  return code


def _distributed_error() -> Tuple[type, ...]:
  module = sys.modules.get("t0jax.parallel.distributed")  # not imported by JAX-free commands
  return (module.DistributedError,) if module else ()


def _report(prog: str, group, error: BaseException, code: int) -> int:
  prefix = f"[process {group.process_id}] " if group is not None and group.is_multiprocess else ""
  print(f"{prog}: {prefix}{one_line(error)}", file=sys.stderr)
  return code
