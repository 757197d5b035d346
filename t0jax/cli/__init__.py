"""The `t0jax` command: one subcommand per job, each implemented in its own module.

Subcommand modules are imported only when chosen, so `t0jax prompts` never pays for JAX and
`t0jax predict` never pays for TensorFlow.
"""

import importlib
import sys

# subcommand -> (module, one-line help). Each module exposes `main(argv: list[str]) -> int`.
COMMANDS = {
  "predict": ("t0jax.cli.predict", "score answer choices (or generate) with a checkpoint"),
  "prompts": ("t0jax.cli.prompts", "preview promptsource templates on an example"),
  "tasks": ("t0jax.cli.tasks", "list mixtures and tasks, show processed examples"),
  "train": ("t0jax.cli.train", "fine-tune on a SeqIO mixture, configured by gin files"),
  "eval": ("t0jax.cli.eval", "zero-shot evaluation by rank classification"),
  "infer": ("t0jax.cli.infer", "T5X's infer: predictions or scores of a SeqIO task, as jsonl"),
  "plan": ("t0jax.cli.plan", "plan memory and step time of a run on a topology"),
  "convert": ("t0jax.cli.convert", "convert a checkpoint to Hugging Face or t0jax format"),
}


def _usage() -> str:
  lines = ["usage: t0jax COMMAND [ARGS...]", "", "commands:"]
  for name, (_, text) in COMMANDS.items():
    lines.append(f"  {name:<9} {text}")
  lines.append("")
  lines.append("Run `t0jax COMMAND --help` for the options of a command.")
  return "\n".join(lines)


def _import_command(module_name: str):
  """A command's module registers gin configurables on import; a command run earlier in this
  process (a test, a notebook) may have locked gin's configuration."""
  gin = sys.modules.get("gin")
  if gin is None or not gin.config_is_locked():
    return importlib.import_module(module_name)
  with gin.unlock_config():
    return importlib.import_module(module_name)


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(_usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    import difflib

    close = difflib.get_close_matches(name, COMMANDS, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    print(f"t0jax: unknown command {name!r}.{hint}\n\n{_usage()}", file=sys.stderr)
    return 2
  module_name = COMMANDS[name][0]
  try:
    module = _import_command(module_name)
  except ModuleNotFoundError as e:
    if e.name == module_name:
      print(f"t0jax: command {name!r} is not available in this version.", file=sys.stderr)
      return 2
    raise
  return int(module.main(rest) or 0)


if __name__ == "__main__":
  sys.exit(main())
