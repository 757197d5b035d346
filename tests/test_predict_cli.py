"""`t0jax predict`: scores equal transformers' (the t-zero way), JSONL in order, generation, errors.

A tiny sentencepiece model and a random-weight HF T5 are built in a temp dir; nothing downloads.
"""

import io
import json
import os
import subprocess
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest
import sentencepiece as spm
import torch
import transformers

from small_models import random_t5
from t0jax import cli
from t0jax.cli import predict
from t0jax.data.vocab import Vocabulary

transformers.logging.set_verbosity_error()

_WORDS = dict(
  who=[
    "the cat",
    "a dog",
    "my neighbour",
    "the old sailor",
    "every student",
    "our teacher",
    "the small bird",
    "a farmer",
    "Maria",
    "The captain",
  ],
  does=["reads", "paints", "finds", "carries", "watches", "builds", "forgets", "answers"],
  what=["a red book", "the river", "two apples", "the blue door", "a quiet song", "some bread"],
  when=["on monday", "at night", "after lunch", "in spring"],
)
QUESTION = "the cat reads a red book on monday. Is it true that the cat reads? yes or no"


def _sentences(n=400, seed=0):
  rng = np.random.default_rng(seed)
  pick = lambda key: _WORDS[key][rng.integers(len(_WORDS[key]))]
  return [
    f"{pick('who')} {pick('does')} {pick('what')} {pick('when')}. Is it true? "
    f"{['yes', 'no', 'maybe'][rng.integers(3)]}"
    for _ in range(n)
  ]


def _train_vocab(path):
  model = io.BytesIO()
  # T5's conventions: pad 0, EOS 1, unk 2, no BOS.
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(_sentences()),
    model_writer=model,
    vocab_size=120,
    hard_vocab_limit=False,
    model_type="unigram",
    pad_id=0,
    eos_id=1,
    unk_id=2,
    bos_id=-1,
    minloglevel=2,
  )
  path.write_bytes(model.getvalue())


def _save_model(directory, vocab_size):
  model = random_t5(
    dict(
      vocab_size=vocab_size,
      d_model=32,
      d_kv=8,
      num_heads=4,
      d_ff=48,
      num_layers=2,
      num_decoder_layers=2,
      feed_forward_proj="gated-gelu",
      tie_word_embeddings=False,
      relative_attention_num_buckets=8,
      relative_attention_max_distance=16,
      decoder_start_token_id=0,
    )
  )
  model.save_pretrained(directory, safe_serialization=True)
  return model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  directory = tmp_path_factory.mktemp("predict") / "t5"
  model = _save_model(directory, vocab_size=128)
  _train_vocab(directory / "spiece.model")
  return directory, model, Vocabulary(directory / "spiece.model")


def run(capsys, *argv):
  rc = predict.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return rc, out, err


def tzero_scores(model, vocab, text, choices):
  """t-zero's reference: the input repeated per choice, labels = choice + EOS, summed log-probs."""
  ids = vocab.encode(text)
  labels = [vocab.encode(c) + [1] for c in choices]
  width = max(map(len, labels))
  label_t = torch.tensor([l + [-100] * (width - len(l)) for l in labels])
  with torch.no_grad():
    logits = model(input_ids=torch.tensor([ids] * len(choices)), labels=label_t).logits
  log_probs = torch.log_softmax(logits.float(), dim=-1)
  picked = log_probs.gather(-1, label_t.clamp(min=0)[..., None])[..., 0]
  return (picked * (label_t >= 0)).sum(-1).numpy()


def test_json_scores_equal_transformers_summed_log_probs(ckpt, capsys):
  directory, model, vocab = ckpt
  rc, out, _ = run(
    capsys,
    "--checkpoint",
    directory,
    "--input",
    QUESTION,
    "--choices",
    "yes ||| no ||| maybe not",
    "--json",
  )
  assert rc == 0
  line = json.loads(out)
  assert line["input"] == QUESTION and line["choices"] == ["yes", "no", "maybe not"]
  ref = tzero_scores(model, vocab, QUESTION, line["choices"])
  np.testing.assert_allclose(line["scores"], ref, atol=1e-3, rtol=0)
  assert line["prediction"] == line["choices"][int(np.argmax(ref))]


def test_ranked_output_lists_choices_best_first_with_scores(ckpt, capsys):
  directory, model, vocab = ckpt
  choices = ["yes", "no", "maybe", "the river"]
  rc, out, _ = run(
    capsys, "--checkpoint", directory, "--input", QUESTION, "--choices", "|||".join(choices)
  )
  assert rc == 0
  rows = [line.split(None, 2) for line in out.strip().splitlines()]
  ref = tzero_scores(model, vocab, QUESTION, choices)
  assert [r[2] for r in rows] == [choices[j] for j in np.argsort(-ref)]
  assert [r[0] for r in rows] == ["1.", "2.", "3.", "4."]
  np.testing.assert_allclose([float(r[1]) for r in rows], np.sort(ref)[::-1], atol=1e-3)


def hf_greedy(model, vocab, text, max_new_tokens):
  with torch.no_grad():
    out = model.generate(
      torch.tensor([vocab.encode(text)]),
      max_new_tokens=max_new_tokens,
      do_sample=False,
      num_beams=1,
    )
  return vocab.decode(out[0, 1:].tolist())  # drop the start token


def test_input_file_mixes_scoring_and_generation_in_input_order(ckpt, capsys, tmp_path):
  directory, model, vocab = ckpt
  rows = [
    {"id": 7, "input": QUESTION, "choices": ["yes", "no"]},
    {"input": "a dog finds the river at night."},
    {"input": "Maria paints some bread in spring. True?", "choices": None},
    {"input": "our teacher builds the blue door.", "choices": ["yes", "no", "maybe"]},
  ]
  path = tmp_path / "examples.jsonl"
  path.write_text(
    "\n".join(json.dumps(r) for r in rows[:2])
    + "\n\n"
    + "\n".join(json.dumps(r) for r in rows[2:])
    + "\n"
  )
  rc, out, _ = run(
    capsys,
    "--checkpoint",
    directory,
    "--input_file",
    path,
    "--max_decode_length",
    6,
    "--batch_size",
    3,
  )
  assert rc == 0
  lines = [json.loads(line) for line in out.splitlines()]
  assert [line["input"] for line in lines] == [r["input"] for r in rows]
  assert lines[0]["id"] == 7 and set(lines[0]) == {"id", "input", "choices", "scores", "prediction"}
  for k in (0, 3):
    np.testing.assert_allclose(
      lines[k]["scores"],
      tzero_scores(model, vocab, rows[k]["input"], rows[k]["choices"]),
      atol=1e-3,
      rtol=0,
    )
  for k in (1, 2):
    assert set(lines[k]) == {"input", "output"}
    assert lines[k]["output"] == hf_greedy(model, vocab, rows[k]["input"], 6)


def test_generation_prints_the_greedy_text(ckpt, capsys):
  directory, model, vocab = ckpt
  rc, out, _ = run(
    capsys, "--checkpoint", directory, "--input", "a farmer watches", "--max_decode_length", 6
  )
  assert rc == 0 and out == hf_greedy(model, vocab, "a farmer watches", 6) + "\n"


def test_bfloat16_activations_score_close_to_float32(ckpt, capsys):
  directory, model, vocab = ckpt
  rc, out, _ = run(
    capsys,
    "--checkpoint",
    directory,
    "--input",
    QUESTION,
    "--choices",
    "yes|||no",
    "--json",
    "--dtype",
    "bfloat16",
  )
  assert rc == 0
  np.testing.assert_allclose(
    json.loads(out)["scores"], tzero_scores(model, vocab, QUESTION, ["yes", "no"]), rtol=0.05
  )


def test_the_t0jax_command_dispatches_to_predict_without_importing_tensorflow(ckpt):
  directory, _, _ = ckpt
  code = (
    "import sys; from t0jax.cli import main; "
    f"rc = main(['predict', '--checkpoint', {str(directory)!r}, '--input', 'the cat', "
    "'--choices', 'yes|||no', '--json']); "
    "assert 'tensorflow' not in sys.modules, 'predict imported TensorFlow'; "
    "assert 't0jax.evaluate.scorer' in sys.modules, 'predict bypassed the ChoiceScorer'; "
    "sys.exit(rc)"
  )
  done = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
    timeout=300,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert json.loads(done.stdout)["prediction"] in ("yes", "no")


# ---------------------------------------------------------------------------------------------
# Errors name the flag, file or line and exit with status 2.


def test_missing_checkpoint_directory_is_reported(ckpt, capsys, tmp_path):
  _, _, vocab = ckpt
  rc, _, err = run(
    capsys,
    "--checkpoint",
    tmp_path / "nope",
    "--vocab",
    vocab.path,
    "--input",
    "x",
    "--choices",
    "a|||b",
  )
  assert rc == 2 and "--checkpoint" in err and "nope" in err and "does not exist" in err


def test_directory_without_a_checkpoint_is_reported(ckpt, capsys, tmp_path):
  _, _, vocab = ckpt
  rc, _, err = run(capsys, "--checkpoint", tmp_path, "--vocab", vocab.path, "--input", "x")
  assert rc == 2 and "not a checkpoint t0jax can read" in err and "config.json" in err


def test_bad_jsonl_line_names_file_and_line(ckpt, capsys, tmp_path):
  directory, _, _ = ckpt
  path = tmp_path / "bad.jsonl"
  for body, message in [
    (
      '{"input": "a", "choices": ["x"]}\n{"input": "b", "choices": [}\n',
      "bad.jsonl:2: not valid JSON",
    ),
    ('{"input": "a", "choices": []}\n', 'bad.jsonl:1: "choices" is empty'),
    ('{"text": "a"}\n', 'bad.jsonl:1: needs "input"'),
    ('{"input": "a", "choices": ["x", 3]}\n', "list of strings"),
    ('{"input": "a", "scores": 1}\n', "'scores' is written by predict"),
  ]:
    path.write_text(body)
    rc, out, err = run(capsys, "--checkpoint", directory, "--input_file", path)
    assert rc == 2 and message in err and out == ""


def test_missing_vocabulary_is_reported(capsys, tmp_path):
  _save_model(tmp_path / "novocab", vocab_size=128)
  rc, _, err = run(capsys, "--checkpoint", tmp_path / "novocab", "--input", "x")
  assert rc == 2 and "spiece.model does not exist" in err and "--vocab" in err


def test_vocabulary_larger_than_the_embedding_is_refused(ckpt, capsys, tmp_path):
  _, _, vocab = ckpt
  _save_model(tmp_path / "small", vocab_size=vocab.piece_count - 8)
  rc, _, err = run(
    capsys,
    "--checkpoint",
    tmp_path / "small",
    "--vocab",
    vocab.path,
    "--input",
    "x",
    "--choices",
    "a|||b",
  )
  assert rc == 2 and f"{vocab.piece_count} pieces" in err and "embedding" in err


def test_usage_errors(ckpt, capsys, tmp_path):
  directory, _, _ = ckpt
  path = tmp_path / "x.jsonl"
  path.write_text('{"input": "a"}\n')
  rc, _, err = run(capsys, "--checkpoint", directory, "--input_file", path, "--choices", "a|||b")
  assert rc == 2 and "--choices goes with --input" in err
  rc, _, err = run(capsys, "--checkpoint", directory, "--input", "x", "--choices", "a||| |||b")
  assert rc == 2 and "choice 2 is empty" in err
  rc, _, err = run(capsys, "--checkpoint", directory, "--input", "x", "--batch_size", "0")
  assert rc == 2 and "--batch_size" in err
  rc, _, err = run(capsys, "--checkpoint", directory)
  assert rc == 2 and "--input" in err
  assert cli.main(["predict", "--help"]) == 0
