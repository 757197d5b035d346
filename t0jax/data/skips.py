"""Counts of examples a prompt could not use, kept per task and reported once per task.

A prompt that needs a field some examples lack must not stop a training run: the example is
skipped for that prompt and counted here. The counts are queryable at any time
(`skip_counts()`) and each task logs one summary, the first time a pass over its split ends.
"""

import collections
import logging
import threading

log = logging.getLogger("t0jax.data")

# Events that point at a problem in a template or the data (a warning); anything else is the
# template choosing not to apply, as promptsource conditionals do (logged at info level).
_WARN_PREFIXES = (
  "missing_field:",
  "target_not_in_choices",
  "no_answer_choices",
  "template_error:",
  "extra_separator",
)

_lock = threading.Lock()
_counts: "dict[str, collections.Counter]" = collections.defaultdict(collections.Counter)
_templates: dict = {}
_reported: set = set()


def count(task: str, template_name: str, event: str, n: int = 1) -> None:
  with _lock:
    _counts[task][event] += n
    _templates[task] = template_name


def skip_counts() -> dict:
  """{task name: {event: count}}; events are `missing_field:<field>`, `empty` (the template
  rendered nothing), `unlabeled` (an input without a target, e.g. a test split's label -1:
  training cannot use it), `extra_separator` (more than two `|||` parts, dropped as t-zero
  did), `no_answer_choices`, `template_error:<type>` and `target_not_in_choices` (counted, not
  skipped: score-eval examples keep it with `answer_idx` -1)."""
  with _lock:
    return {task: dict(c) for task, c in _counts.items() if c}


def reset() -> None:
  with _lock:
    _counts.clear()
    _templates.clear()
    _reported.clear()


def report(task: str, read: int, emitted: int) -> None:
  """Log the task's counts once (later passes over the split stay quiet)."""
  with _lock:
    if task in _reported:
      return
    _reported.add(task)
    counts = dict(_counts.get(task, {}))
    template = _templates.get(task, "?")
  if emitted == 0 and read > 0:
    log.error(
      "task %s: template %r produced no example from %d read (%s). Check the template "
      "against the dataset's fields.",
      task,
      template,
      read,
      _describe(counts),
    )
    return
  warned = {e: n for e, n in counts.items() if e.startswith(_WARN_PREFIXES)}
  if warned:
    log.warning(
      "task %s: template %r: %s (of %d examples read). t0jax.catalog.skip_counts() "
      "has the running totals.",
      task,
      template,
      _describe(warned),
      read,
    )
  quiet = {e: n for e, n in counts.items() if e not in warned}
  if quiet:
    log.info(
      "task %s: template %r does not apply to %s of %d examples.",
      task,
      template,
      _describe(quiet),
      read,
    )


def _describe(counts: dict) -> str:
  parts = []
  for event, n in sorted(counts.items()):
    if event.startswith("missing_field:"):
      parts.append(f"{n} skipped for lacking field {event.split(':', 1)[1]!r}")
    elif event == "target_not_in_choices":
      parts.append(f"{n} whose target is not among the answer choices")
    elif event == "unlabeled":
      parts.append(f"{n} skipped for having no target (unlabeled)")
    elif event == "extra_separator":
      parts.append(f"{n} skipped for rendering more than two '|||' parts")
    else:
      parts.append(f"{n} skipped ({event})")
  return "; ".join(parts) or "nothing skipped"
