"""`t0jax prompts`, end to end through the `t0jax` dispatcher."""

import io
import json
import os
import subprocess
import sys

from t0jax.cli import main

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "prompts")
NLI_FILE = os.path.join(FIXTURES, "toy_nli", "templates.yaml")
NLI_EXAMPLE = {"premise": "Rain fell all night.", "hypothesis": "It Rained.", "label": 0}


def run(capsys, tmp_path, args, example=NLI_EXAMPLE):
  example_path = tmp_path / "example.json"
  example_path.write_text(example if isinstance(example, str) else json.dumps(example))
  code = main(["prompts", *args, "--example", str(example_path)])
  out, err = capsys.readouterr()
  return code, [json.loads(line) for line in out.splitlines()], err


def test_file_prints_one_json_line_per_template_in_file_order(capsys, tmp_path):
  code, lines, err = run(capsys, tmp_path, [NLI_FILE])
  assert (code, err) == (0, "")
  assert [line["name"] for line in lines] == ["claim check", "what follows", "yes or no"]
  assert lines[0] == {
    "name": "claim check",
    "input": 'Rain fell all night.\nTaking only the text above as true, is the claim '
    '"It Rained." true, false, or neither?',
    "target": "True",
    "choices": ["True", "Neither", "False"],
    "original_task": True,
    "applies": True,
  }
  assert lines[1]["target"] == "It Rained." and lines[1]["original_task"] is False
  assert lines[2]["input"].endswith("Does it follow that it rained.? Yes or No?")
  assert lines[2]["target"] == "Yes" and lines[2]["choices"] == ["Yes", "No"]


def test_template_flag_selects_one_template(capsys, tmp_path):
  code, lines, _ = run(capsys, tmp_path, [NLI_FILE, "--template", "what follows"])
  assert code == 0 and [line["name"] for line in lines] == ["what follows"]


def test_not_applying_templates_are_listed_with_null_text_and_a_reason(capsys, tmp_path):
  code, lines, _ = run(capsys, tmp_path, [NLI_FILE], {**NLI_EXAMPLE, "label": 1})
  assert code == 0
  assert lines[1] == {
    "name": "what follows",
    "input": None,
    "target": None,
    "choices": None,
    "original_task": False,
    "applies": False,
    "reason": "empty",
  }
  code, lines, _ = run(capsys, tmp_path, [NLI_FILE], {"premise": "p", "label": 0})
  assert {line["reason"] for line in lines} == {"missing_field:hypothesis"}
  assert not any(line["applies"] for line in lines)


def test_directory_lines_carry_dataset_and_subset(capsys, tmp_path):
  example = {
    "context": "Ada wrote the first program.",
    "question": "Who wrote it?",
    "answers": {"text": ["Ada", "Ada Lovelace", "Ada"], "answer_start": [0, 0, 0]},
  }
  code, lines, _ = run(capsys, tmp_path, [FIXTURES], example)
  assert code == 0
  assert [(l["dataset"], l["subset"], l["name"]) for l in lines] == [
    ("toy_nli", None, "claim check"),
    ("toy_nli", None, "what follows"),
    ("toy_nli", None, "yes or no"),
    ("toy_qa", "extractive", "answer from context"),
    ("toy_qa", "extractive", "choose the span"),
  ]
  assert lines[3]["target"] == "Ada"
  assert lines[4]["input"] == "Who wrote it?\nOptions:\n- Ada\n- Ada Lovelace\n- Ada"
  assert lines[4]["choices"] == ["Ada", "Ada Lovelace", "Ada"]


def test_example_can_come_from_stdin(capsys, monkeypatch):
  monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(NLI_EXAMPLE)))
  code = main(["prompts", NLI_FILE, "--example", "-", "--template", "claim check"])
  assert code == 0 and json.loads(capsys.readouterr().out)["target"] == "True"


def test_bad_example_file_exits_2_naming_it(capsys, tmp_path):
  code, lines, err = run(capsys, tmp_path, [NLI_FILE], "{not json")
  assert code == 2 and lines == [] and "example.json: not valid JSON" in err
  code, _, err = run(capsys, tmp_path, [NLI_FILE], "[1, 2]")
  assert code == 2 and "expected one JSON object" in err
  assert main(["prompts", NLI_FILE, "--example", str(tmp_path / "absent.json")]) == 2
  assert "absent.json: cannot read it" in capsys.readouterr().err


def test_unknown_template_name_exits_2_with_suggestions(capsys, tmp_path):
  code, _, err = run(capsys, tmp_path, [NLI_FILE, "--template", "claim chek"])
  assert code == 2 and "--template 'claim chek'" in err and "did you mean: 'claim check'" in err


def test_bad_templates_file_exits_2_naming_the_file(capsys, tmp_path):
  bad = tmp_path / "bad" / "templates.yaml"
  bad.parent.mkdir()
  bad.write_text("dataset: d\ntemplates:\n  x: {name: n, jinja: '{% if %}'}\n")
  code, _, err = run(capsys, tmp_path, [str(bad)])
  assert code == 2 and str(bad) in err and "template 'n' (id x)" in err


def test_template_errors_other_than_missing_fields_exit_2(capsys, tmp_path):
  code, _, err = run(capsys, tmp_path, [NLI_FILE], {**NLI_EXAMPLE, "answer_choices": []})
  assert code == 2 and "'answer_choices'" in err and "claim check" in err


def test_usage_errors_exit_2_and_help_exits_0(capsys):
  assert main(["prompts", NLI_FILE]) == 2
  assert "--example" in capsys.readouterr().err
  assert main(["prompts", "--help"]) == 0
  assert "FILE_OR_DIR" in capsys.readouterr().out


def test_command_imports_neither_jax_nor_tensorflow(tmp_path):
  example = tmp_path / "example.json"
  example.write_text(json.dumps(NLI_EXAMPLE))
  script = (
    "import sys; from t0jax.cli import main; "
    f"code = main(['prompts', {NLI_FILE!r}, '--example', {str(example)!r}]); "
    "heavy = sorted(m for m in ('jax', 'tensorflow', 'flax', 'seqio') "
    "if m in sys.modules); "
    "print('HEAVY', heavy, code)"
  )
  result = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, check=True
  )
  assert result.stdout.strip().splitlines()[-1] == "HEAVY [] 0"
