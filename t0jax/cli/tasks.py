"""`t0jax tasks`: list mixtures and their tasks with mixing rates; show processed examples.

t0jax tasks                      every mixture: tasks, datasets, total rate
t0jax tasks NAME                 a mixture's tasks and rates (or a task's details)
t0jax tasks show NAME [-n 3] [--split S] [--tokens] [--data-dir DIR] [--vocab FILE] [--fixtures]
t0jax tasks check-prompts [--promptsource_dir DIR]   templates against the hub's schemas
t0jax tasks --module my_project.tasks [NAME]   your own SeqIO tasks and mixtures (also `show`)
"""

import argparse
import importlib
import itertools
import sys
import textwrap

from t0jax.cli import common


def _add_module_flag(parser) -> None:
  parser.add_argument(
    "--module",
    action="append",
    default=[],
    metavar="MODULE",
    help="import this module first (your SeqIO tasks and mixtures, T5X's "
    "MIXTURE_OR_TASK_MODULE); without NAME, list what it registers",
  )


def _parser() -> argparse.ArgumentParser:
  parser = common.parser(
    "tasks",
    "List mixtures and tasks, or show processed examples.",
    data=True,
    verbose=False,
    epilog="`t0jax tasks show NAME` prints examples of a task: `show --help` for options.",
  )
  parser.add_argument("name", nargs="?", help="a mixture (lists its tasks) or a task (details)")
  _add_module_flag(parser)
  return parser


def _show_parser() -> argparse.ArgumentParser:
  parser = common.parser(
    "tasks show", "Print a few processed examples of a task.", data=True, verbose=False
  )
  _add_module_flag(parser)
  parser.add_argument("name", help="task name (see `t0jax tasks MIXTURE`)")
  parser.add_argument("-n", "--num", type=int, default=3, help="examples to print (default 3)")
  parser.add_argument(
    "--split",
    help="split to read (default: train for training tasks, validation for score-eval tasks)",
  )
  parser.add_argument(
    "--tokens",
    action="store_true",
    help="run the full seqio pipeline and print token counts (needs the task's vocabulary)",
  )
  parser.add_argument(
    "--data-dir", help="folder of <dataset>[/<subset>]/<split>.jsonl files (same as T0JAX_DATA_DIR)"
  )
  parser.add_argument(
    "--vocab", help="sentencepiece model for catalogue tasks (same as T0JAX_VOCAB)"
  )
  parser.add_argument(
    "--fixtures",
    action="store_true",
    help="read the catalogue's offline fixture rows (tasks/fixtures/), in the "
    "Hugging Face schema, for every split",
  )
  return parser


def _fmt_rate(rate: float) -> str:
  return f"{rate:,.0f}" if rate >= 10 else f"{rate:.3g}"


def _summary(catalog) -> None:
  rows = []
  for mix in catalog.MIXTURES:
    if mix.name not in catalog.MIXTURE_NAMES:
      rows.append((mix.name, "-", "-", "-", mix.description + " (no tasks yet)"))
      continue
    rates = catalog.mixture_rates(mix.name)
    datasets = {catalog.task_info(t).dataset.key for t, _ in rates}
    rows.append(
      (
        mix.name,
        str(len(rates)),
        str(len(datasets)),
        _fmt_rate(sum(r for _, r in rates)),
        mix.description,
      )
    )
  header = ("mixture", "tasks", "datasets", "total rate", "description")
  widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
  for row in [header] + rows:
    print(
      "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row[:4], widths))
      )
      + "  "
      + row[4]
    )
  print("\n`t0jax tasks MIXTURE` lists a mixture's tasks; `t0jax tasks show TASK` prints examples.")


def _mixture(catalog, name: str) -> None:
  rates = catalog.mixture_rates(name)
  total = sum(r for _, r in rates) or 1.0
  width = max(len(t) for t, _ in rates)
  print(f"{name}: {len(rates)} tasks")
  print(f"{'task'.ljust(width)}  {'rate':>12}  {'share':>7}  split")
  for task, rate in rates:
    info = catalog.task_info(task)
    split = info.dataset.train_split if info.trains else info.eval_split
    print(f"{task.ljust(width)}  {_fmt_rate(rate):>12}  {100 * rate / total:6.2f}%  {split}")


def _task(catalog, name: str) -> None:
  info = catalog.task_info(name)
  task = catalog.get_task_or_mixture(name)
  spec = info.dataset
  print(f"task      {name}")
  print(f"dataset   {spec.label} ({spec.file})")
  print(
    f"prompt    {info.prompt.name!r} (id {info.prompt.id}, "
    f"original task: {'yes' if info.prompt.original_task else 'no'}) in {spec.templates_path}"
  )
  print(f"kind      {'score-eval (rank classification)' if info.score_eval else 'training'}")
  for split in task.splits:
    print(
      f"split     {split} -> {task.source.split_map[split]} "
      f"({task.num_input_examples(split):,} examples)"
    )
  mixtures = [m for m in catalog.MIXTURE_NAMES if name in dict(catalog.mixture_rates(m))]
  print(f"mixtures  {', '.join(mixtures) or 'none'}")


def _show(catalog, args) -> None:
  import t0jax.data as data

  if args.data_dir:
    data.set_data_dir(args.data_dir)
  if args.vocab:
    data.set_vocab(args.vocab)
  if args.fixtures:
    import os
    import tempfile
    from t0jax.catalog import testing

    rows = tempfile.mkdtemp(prefix="t0jax-fixtures-")
    testing.fixture_data_dir(
      catalog.load_catalog(catalog.ROOT), os.path.join(catalog.ROOT, "fixtures"), rows
    )
    data.set_data_dir(rows)
  info = catalog.task_info(args.name)
  task = catalog.get_task_or_mixture(args.name)
  split = args.split or (
    "validation"
    if info.score_eval and "validation" in task.splits
    else "train"
    if "train" in task.splits
    else task.splits[0]
  )
  examples = list(itertools.islice(task.source.examples(split), args.num))
  lengths = [None] * len(examples)
  if args.tokens:
    ds = task.get_dataset(
      sequence_length=None, split=split, shuffle=False, try_in_mem_cache=False
    )  # a sample, not a full pass
    lengths = [
      (len(ex["inputs"]), len(ex["targets"]))
      for ex in itertools.islice(ds.as_numpy_iterator(), len(examples))
    ]
  print(f"{args.name} ({split}): {len(examples)} example(s)")
  for i, (ex, length) in enumerate(zip(examples, lengths)):
    print(f"\n--- example {i + 1}" + (f" (idx {ex['idx']})" if "idx" in ex else "") + " ---")
    print("input:")
    print(textwrap.indent(ex["inputs"], "  "))
    print(f"target: {ex['targets']}")
    if "answer_choices" in ex:
      for j, choice in enumerate(ex["answer_choices"]):
        mark = "  <- answer" if j == ex["answer_idx"] else ""
        print(f"  choice {j}: {choice}{mark}")
      if ex["answer_idx"] < 0:
        print("  (the target is not among the choices: answer_idx -1)")
    if length:
      print(f"tokens: inputs {length[0]}, targets {length[1]} (targets include EOS)")


# --- a user's own SeqIO tasks (--module) -----------------------------------------------------------


def _import_modules(modules) -> tuple:
  """Import the modules; the (mixtures, tasks) they registered beyond the catalogue's."""
  import seqio

  before = set(seqio.MixtureRegistry.names()), set(seqio.TaskRegistry.names())
  for module in modules:
    try:
      importlib.import_module(module)
    except ImportError as e:
      raise common.UsageError(
        f"--module {module}: cannot be imported ({e}); install it or put its folder on PYTHONPATH."
      ) from e
  return (
    sorted(set(seqio.MixtureRegistry.names()) - before[0]),
    sorted(set(seqio.TaskRegistry.names()) - before[1]),
  )


def _user_summary(modules, mixtures, tasks) -> None:
  import seqio

  print(f"{', '.join(modules)}: {len(mixtures)} mixture(s), {len(tasks)} task(s)")
  for name in mixtures:
    mixture = seqio.get_mixture_or_task(name)
    print(f"  mixture {name}: {len(mixture.tasks)} task(s)")
  for name in tasks:
    task = seqio.get_mixture_or_task(name)
    print(f"  task    {name}: splits {', '.join(task.splits) or '-'}")
  print(
    "\n`t0jax tasks --module M NAME` details one; `t0jax tasks show NAME --module M` prints "
    "examples."
  )


def _user_task(name: str) -> None:
  import seqio

  task = seqio.get_mixture_or_task(name)
  print(f"task      {name}")
  print(f"source    {type(task.source).__name__}")
  for split in task.splits:
    count = task.num_input_examples(split)
    print(f"split     {split}" + (f" ({count:,} examples)" if count else ""))
  for key, feature in task.output_features.items():
    eos = "added" if feature.add_eos else "not added"
    print(
      f"feature   {key}: vocabulary {type(feature.vocabulary).__name__} "
      f"({feature.vocabulary.vocab_size} ids), EOS {eos}"
    )
  steps = [getattr(p, "__name__", type(p).__name__) for p in task.preprocessors]
  print(f"steps     {', '.join(steps)}")
  mixtures = [
    m
    for m in seqio.MixtureRegistry.names()
    if name in seqio.get_mixture_or_task(m).rate_per_task_name
  ]
  print(f"mixtures  {', '.join(sorted(mixtures)) or 'none'}")


def _user_mixture(name: str) -> None:
  import seqio

  mixture = seqio.get_mixture_or_task(name)
  rates = [(t.name, float(mixture.get_rate(t))) for t in mixture.tasks]
  total = sum(r for _, r in rates) or 1.0
  width = max([len(t) for t, _ in rates] + [4])
  print(f"{name}: {len(rates)} tasks")
  print(f"{'task'.ljust(width)}  {'rate':>12}  {'share':>7}")
  for task, rate in rates:
    print(f"{task.ljust(width)}  {_fmt_rate(rate):>12}  {100 * rate / total:6.2f}%")


def _user_show(args) -> None:
  import seqio

  task = seqio.get_mixture_or_task(args.name)
  split = args.split or ("validation" if "validation" in task.splits else task.splits[0])
  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, try_in_mem_cache=False)
  examples = list(itertools.islice(ds.as_numpy_iterator(), args.num))
  vocab = task.output_features
  print(f"{args.name} ({split}): {len(examples)} example(s)")
  for i, ex in enumerate(examples):
    print(f"\n--- example {i + 1} ---")
    for key, value in ex.items():
      if key in vocab and f"{key}_pretokenized" not in ex:
        value = vocab[key].vocabulary.decode([int(t) for t in value])
      elif isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
      print(f"{key}:")
      print(textwrap.indent(str(value), "  "))
      if key in vocab and args.tokens:
        print(f"  ({len(ex[key])} tokens)")


def _is_catalog_task(catalog, name: str) -> bool:
  try:
    catalog.task_info(name)
    return True
  except KeyError:
    return False


def _body(ctx: common.Context, show: bool) -> int:
  args = ctx.args
  common.import_tensorflow()
  import t0jax.catalog as catalog  # registers everything; late, so `--help` stays instant

  try:
    mixtures, tasks = _import_modules(args.module) if args.module else ([], [])
    if show:
      if args.num < 1:
        raise common.UsageError("-n must be at least 1.")
      if args.module and not _is_catalog_task(catalog, args.name):
        catalog.get_task_or_mixture(args.name)  # an unknown name lists the closest
        _user_show(args)
      else:
        _show(catalog, args)
    elif args.name is None and args.module:
      _user_summary(args.module, mixtures, tasks)
    elif args.name is None:
      _summary(catalog)
    elif args.name in catalog.MIXTURE_NAMES:
      _mixture(catalog, args.name)
    elif _is_catalog_task(catalog, args.name):
      _task(catalog, args.name)
    else:
      import seqio

      found = catalog.get_task_or_mixture(args.name)  # unknown: the closest names
      (_user_mixture if isinstance(found, seqio.Mixture) else _user_task)(args.name)
  except catalog.UnknownNameError as e:
    raise common.UsageError(str(e)) from e
  except catalog.DataUnavailableError as e:
    raise common.CheckFailed(str(e)) from e
  return 0


def _check_parser() -> argparse.ArgumentParser:
  parser = common.parser(
    "tasks check-prompts",
    "Check every T0 dataset's templates (promptsource's with "
    "--promptsource_dir) against the fields of its fixture rows, the hub's current schema: "
    "one line per template that reads a field no row has or fails to render.",
    data=True,
    verbose=False,
  )
  parser.add_argument(
    "--fixtures",
    metavar="DIR",
    help="folder of <dataset>[__<subset>].jsonl rows (default: the catalogue's tasks/fixtures/)",
  )
  return parser


def _check(ctx: common.Context) -> int:
  import os
  import t0jax.catalog as catalog
  from t0jax.catalog import t0
  from t0jax.data import settings

  fixtures = ctx.args.fixtures or os.path.join(catalog.ROOT, "fixtures")
  problems = t0.check_prompts(catalog.load_t0_catalog(settings.promptsource_dir()), fixtures)
  for line in problems:
    print(line)
  collection = settings.promptsource_dir() or "the catalogue's own prompts"
  print(f"{len(problems)} problem(s) in {collection} against {fixtures}.")
  return 1 if problems else 0


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ["check-prompts"]:
    return common.run(
      "tasks check-prompts", argv[1:], _check_parser, _check, failed=(OSError, ValueError)
    )
  show = bool(argv) and argv[0] == "show"
  return common.run(
    "tasks show" if show else "tasks",
    argv[1:] if show else argv,
    _show_parser if show else _parser,
    lambda ctx: _body(ctx, show),
    failed=(OSError, ValueError),
  )


if __name__ == "__main__":
  sys.exit(main())
