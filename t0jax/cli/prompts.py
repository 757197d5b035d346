"""`t0jax prompts FILE_OR_DIR --example EXAMPLE.json [--template NAME]`: preview templates.

Prints one JSON line per template (file order): what the model would see and be trained on for
this example, or why the template does not apply. Imports neither JAX nor TensorFlow.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys

from t0jax.cli import common
from t0jax.prompts.errors import TemplateError
from t0jax.prompts.render import apply_or_skip
from t0jax.prompts.templates import load_templates


def _parser() -> argparse.ArgumentParser:
  parser = common.parser(
    "prompts",
    verbose=False,
    description="Apply promptsource-format templates to one example and print one JSON line "
    "per template: name, input, target, choices, original_task, applies (and "
    "reason when it does not apply; dataset and subset for a directory).",
  )
  parser.add_argument(
    "path", metavar="FILE_OR_DIR", help="a templates.yaml file, or a directory searched for them"
  )
  parser.add_argument(
    "--example",
    required=True,
    metavar="EXAMPLE.json",
    help="a JSON file holding one example object (field -> value); - for stdin",
  )
  parser.add_argument("--template", metavar="NAME", help="only the template(s) with this name")
  return parser


class _UsageError(Exception):
  pass


def _read_example(source: str) -> dict:
  label = "standard input" if source == "-" else source
  try:
    if source == "-":
      text = sys.stdin.read()
    else:
      with open(source, encoding="utf-8") as stream:
        text = stream.read()
  except OSError as error:
    raise _UsageError(f"--example {label}: cannot read it: {error.strerror}.") from None
  try:
    example = json.loads(text)
  except json.JSONDecodeError as error:
    raise _UsageError(f"--example {label}: not valid JSON ({error}).") from None
  if not isinstance(example, dict):
    raise _UsageError(
      f"--example {label}: expected one JSON object (field -> value), got {type(example).__name__}."
    )
  return example


def _line(template, example: dict) -> dict:
  # A preview shows unlabeled examples too (input, empty target), as promptsource does.
  rendered, reason = apply_or_skip(template, example, require_target=False)
  line = {
    "name": template.name,
    "input": None,
    "target": None,
    "choices": None,
    "original_task": template.metadata.original_task,
    "applies": rendered is not None,
  }
  if rendered is None:
    line["reason"] = reason
  else:
    line.update(input=rendered.input, target=rendered.target, choices=rendered.choices)
  return line


def _select(collections, path: str, name: str | None) -> list:
  selected = [
    (collection, template)
    for collection in collections
    for template in collection.templates.values()
    if name is None or template.name == name
  ]
  if selected:
    return selected
  if name is None:
    raise _UsageError(f"{path}: holds no templates.")
  names = sorted({t.name for c in collections for t in c.templates.values()})
  close = difflib.get_close_matches(name, names, n=5)
  hint = f"; did you mean: {', '.join(map(repr, close))}?" if close else "."
  raise _UsageError(
    f"--template {name!r}: no template by that name in {path}{hint} Names: "
    f"{', '.join(map(repr, names[:40]))}{' ...' if len(names) > 40 else ''}"
  )


def _run(args: argparse.Namespace) -> None:
  collections = load_templates(args.path)
  selected = _select(collections, args.path, args.template)
  example = _read_example(args.example)
  from_dir = os.path.isdir(args.path)
  for collection, template in selected:
    line = _line(template, example)
    if from_dir:
      line = {"dataset": collection.dataset, "subset": collection.subset, **line}
    print(json.dumps(line, ensure_ascii=False), flush=True)


def _fetch_parser() -> argparse.ArgumentParser:
  from t0jax.prompts import fetch

  parser = common.parser(
    "prompts fetch",
    "Download promptsource's template tree (T0's prompts) from its source "
    "archive with pip, and print the T0JAX_PROMPTSOURCE line that makes t0jax use it.",
    verbose=False,
  )
  parser.add_argument(
    "--version",
    default=fetch.DEFAULT_VERSION,
    help=f"promptsource release (default {fetch.DEFAULT_VERSION}, T0's)",
  )
  parser.add_argument(
    "--dir", help="where the templates go (default: ~/.cache/t0jax/promptsource-VERSION/templates)"
  )
  return parser


def _fetch(args) -> None:
  import shlex
  from t0jax.prompts import fetch

  path = fetch.fetch(args.version, args.dir)
  print(f"export T0JAX_PROMPTSOURCE={shlex.quote(path)}")


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ["fetch"]:
    from t0jax.prompts.fetch import FetchError

    return common.run(
      "prompts fetch",
      argv[1:],
      _fetch_parser,
      lambda ctx: _fetch(ctx.args),
      failed=(FetchError, OSError),
    )
  return common.run(
    "prompts", argv, _parser, lambda ctx: _run(ctx.args), bad_input=(TemplateError, _UsageError)
  )


if __name__ == "__main__":
  sys.exit(main())
