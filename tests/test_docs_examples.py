"""Every `t0jax ...` command shown in the README and docs/ still parses: the command exists, its
flags are accepted, and, for the gin-configured commands, its gin files, includes, macros and
bindings resolve. The heavy part each command would then run (training, evaluating, converting
a checkpoint that the docs only name) is replaced by a recorder; everything before it is real.

Nothing is lost for users: a flag or macro that a doc shows and the code dropped fails here.
"""

import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
COMMAND = re.compile(r"(?:^|\s)(t0jax (?:train|eval|infer|plan|tasks|predict|prompts|convert)\b.*)")


def _is_synopsis(command: str) -> bool:
  """A usage line (`[--flag X]`, `...`, FILE_OR_DIR), not an example to run."""
  return bool(re.search(r"\[--|(^|\s)\.\.\.(\s|$)|FILE_OR_DIR", command))


def _examples():
  """(doc, command line) for every `t0jax CMD ...` in a fenced code block, continuations joined,
  comments dropped; also the part after `--` of launcher lines. Blocks that first point t0jax at
  a promptsource tree (which tests never download) are left out."""
  out = []
  for doc in DOCS:
    for block in re.findall(r"```[a-z]*\n(.*?)```", doc.read_text(), re.S):
      if "T0JAX_PROMPTSOURCE=" in block:
        continue
      for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        line = re.sub(r"\s+#.*$", "", line.strip())
        m = COMMAND.search(line)
        if m and not _is_synopsis(m.group(1)):
          command = m.group(1).strip().rstrip("&").strip().replace("$i", "0")
          out.append((doc.name, command))
  return out


EXAMPLES = _examples()


def test_the_docs_show_examples_of_every_gin_command():
  shown = {cmd.split()[1] for _, cmd in EXAMPLES}
  assert {"train", "eval", "infer", "plan", "convert"} <= shown, shown


class _Recorded(Exception):
  """Raised by the stand-in of a command's heavy part: everything before it ran."""


@pytest.fixture
def stand_ins(monkeypatch, tmp_path):
  """The heavy parts replaced: each raises _Recorded after checking what gin bound. The docs'
  user task module (`my_project.tasks`) exists, empty."""
  import gin

  (tmp_path / "my_project").mkdir()
  (tmp_path / "my_project" / "__init__.py").write_text("")
  (tmp_path / "my_project" / "tasks.py").write_text("# the user's SeqIO tasks would go here\n")
  monkeypatch.syspath_prepend(str(tmp_path))

  from t0jax.cli import convert, eval as eval_cli, infer, predict
  from t0jax.prompts import fetch
  from t0jax.parallel import distributed
  from t0jax.train import trainer

  def train():
    # The bindings every training run needs resolve (macros included).
    for name in ("model_dir", "mixture_or_task_name", "batch_size"):
      gin.query_parameter(f"t0jax.train.{name}")
    raise _Recorded("train")

  def record(what):
    def stand_in(*args, **kwargs):
      raise _Recorded(what)

    return stand_in

  monkeypatch.setattr(trainer, "train", train)
  monkeypatch.setattr(eval_cli, "evaluate_checkpoint", record("eval"))
  monkeypatch.setattr(eval_cli, "evaluate_steps", record("eval steps"))
  monkeypatch.setattr(infer, "infer_checkpoint", record("infer"))
  monkeypatch.setattr(predict, "_run", record("predict"))  # the docs' checkpoints are not here
  monkeypatch.setattr(fetch, "fetch", record("prompts fetch"))  # never the network in tests
  # The docs name checkpoints that are not here: convert stops once its flags and gin parsed.
  monkeypatch.setattr(convert, "_check_destination", record("convert"))
  # Multi-process examples resolve their process group from the flags, without connecting.
  monkeypatch.setattr(
    distributed, "initialize_from_args", lambda args, environ=None: distributed.resolve(args, {})
  )
  monkeypatch.setattr(distributed, "finish", lambda group, code: code)
  return _Recorded


@pytest.mark.parametrize("doc,command", EXAMPLES, ids=[f"{d}:{c[:60]}" for d, c in EXAMPLES])
def test_doc_example_parses(doc, command, stand_ins, monkeypatch, capsys):
  monkeypatch.chdir(ROOT)  # the docs' relative gin paths are relative to a checkout
  monkeypatch.setattr("sys.stdin", io.StringIO('{"text": "an example"}'))  # `--example -`
  argv = shlex.split(command)[1:]
  from t0jax import cli

  try:
    code = cli.main(argv)
  except stand_ins:
    return  # reached the heavy part with every flag and binding accepted
  err = capsys.readouterr().err
  if argv[0] in ("plan", "tasks", "prompts"):
    # These run for real (shapes, YAML, templates): 0 done; 1 is their documented answer for
    # "does not fit" (plan) or "no data here" (tasks show).
    assert code in (0, 1), f"{doc}: `{command}` failed: {err}"
    return
  pytest.fail(f"{doc}: `{command}` exited {code} before its work started: {err}")
