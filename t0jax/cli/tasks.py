"""`t0jax tasks`: list mixtures and their tasks with mixing rates; show processed examples.

    t0jax tasks                      every mixture: tasks, datasets, total rate
    t0jax tasks NAME                 a mixture's tasks and rates (or a task's details)
    t0jax tasks show NAME [-n 3] [--split S] [--tokens] [--data-dir DIR] [--vocab FILE]
"""
import argparse
import itertools
import sys
import textwrap


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t0jax tasks", description="List mixtures and tasks, or show processed examples.",
        epilog="`t0jax tasks show NAME` prints examples of a task: `show --help` for options.")
    parser.add_argument("name", nargs="?", help="a mixture (lists its tasks) or a task (details)")
    return parser


def _show_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t0jax tasks show",
                                     description="Print a few processed examples of a task.")
    parser.add_argument("name", help="task name (see `t0jax tasks MIXTURE`)")
    parser.add_argument("-n", "--num", type=int, default=3, help="examples to print (default 3)")
    parser.add_argument("--split", help="split to read (default: train for training tasks, "
                                        "validation for score-eval tasks)")
    parser.add_argument("--tokens", action="store_true",
                        help="run the full seqio pipeline and print token counts (needs the "
                             "task's vocabulary)")
    parser.add_argument("--data-dir", help="folder of <dataset>[/<subset>]/<split>.jsonl files "
                                           "(same as T0JAX_DATA_DIR)")
    parser.add_argument("--vocab", help="sentencepiece model for catalogue tasks (same as T0JAX_VOCAB)")
    return parser


def _catalog():
    import t0jax.catalog  # registers everything; imported late so `--help` stays instant
    return t0jax.catalog


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
        rows.append((mix.name, str(len(rates)), str(len(datasets)),
                     _fmt_rate(sum(r for _, r in rates)), mix.description))
    header = ("mixture", "tasks", "datasets", "total rate", "description")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                        enumerate(zip(row[:4], widths))) + "  " + row[4])
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
    print(f"prompt    {info.prompt.name!r} (id {info.prompt.id}, "
          f"original task: {'yes' if info.prompt.original_task else 'no'}) in {spec.templates_path}")
    print(f"kind      {'score-eval (rank classification)' if info.score_eval else 'training'}")
    for split in task.splits:
        print(f"split     {split} -> {task.source.split_map[split]} "
              f"({task.num_input_examples(split):,} examples)")
    mixtures = [m for m in catalog.MIXTURE_NAMES if name in dict(catalog.mixture_rates(m))]
    print(f"mixtures  {', '.join(mixtures) or 'none'}")


def _show(catalog, args) -> None:
    import t0jax.data as data
    if args.data_dir:
        data.set_data_dir(args.data_dir)
    if args.vocab:
        data.set_vocab(args.vocab)
    info = catalog.task_info(args.name)
    task = catalog.get_task_or_mixture(args.name)
    split = args.split or ("validation" if info.score_eval and "validation" in task.splits
                           else "train" if "train" in task.splits else task.splits[0])
    examples = list(itertools.islice(task.source.examples(split), args.num))
    lengths = [None] * len(examples)
    if args.tokens:
        ds = task.get_dataset(sequence_length=None, split=split, shuffle=False,
                              try_in_mem_cache=False)  # a sample, not a full pass
        lengths = [(len(ex["inputs"]), len(ex["targets"]))
                   for ex in itertools.islice(ds.as_numpy_iterator(), len(examples))]
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


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    show = bool(argv) and argv[0] == "show"
    args = (_show_parser() if show else _parser()).parse_args(argv[1:] if show else argv)
    catalog = _catalog()
    try:
        if show:
            if args.num < 1:
                print("t0jax tasks show: -n must be at least 1.", file=sys.stderr)
                return 2
            _show(catalog, args)
        elif args.name is None:
            _summary(catalog)
        elif args.name in catalog.MIXTURE_NAMES:
            _mixture(catalog, args.name)
        else:
            _task(catalog, args.name)
    except catalog.UnknownNameError as e:
        print(f"t0jax tasks: {e}", file=sys.stderr)
        return 2
    except (catalog.DataUnavailableError, OSError, ValueError) as e:
        print(f"t0jax tasks: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
