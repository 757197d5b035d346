"""`t0jax infer` on the catalogue's score-eval tasks: T5X's file per task, lines in the task's
order, predictions by rank classification with the choices' scores, and scores of the targets,
each equal to transformers' log-likelihoods on the same weights."""

import json

import numpy as np
import pytest

from t0jax import cli
from t0jax.evaluate import data as eval_data
from test_eval_command import CFG, random_params, save_t0jax_checkpoint

TASK_MIXTURE = "demo_heldout_score_eval"
FAST = ["--max_examples", "2", "--gin.BATCH_SIZE=8"]


@pytest.fixture(scope="module")
def inferred(tmp_path_factory):
  from t0jax.checkpoints import save_hf_checkpoint

  root = tmp_path_factory.mktemp("infer")
  params = random_params(CFG, seed=3)
  run = save_t0jax_checkpoint(params, CFG, str(root / "run"))
  hf = str(save_hf_checkpoint(params, CFG, root / "hf"))
  for mode in ("predict", "score"):
    assert (
      cli.main(
        [
          "infer",
          "--checkpoint",
          run,
          "--mixture_or_task",
          TASK_MIXTURE,
          "--output_dir",
          str(root / "out"),
          "--mode",
          mode,
          *FAST,
        ]
      )
      == 0
    )
  return root / "out", hf


def _read(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def _reference_scores(hf_dir, inputs, choices):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir).eval()
  ids = torch.tensor([inputs] * len(choices))
  labels = torch.zeros((len(choices), max(map(len, choices))), dtype=torch.long)
  for j, c in enumerate(choices):
    labels[j, : len(c)] = torch.tensor(c)
  with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).logits
  picked = torch.log_softmax(logits.double(), -1).gather(-1, labels[..., None])[..., 0]
  return (picked * (labels > 0)).sum(-1).numpy()


def test_one_t5x_file_per_task_and_mode(inferred):
  import seqio

  out, _ = inferred
  tasks = [t.name for t in seqio.get_mixture_or_task(TASK_MIXTURE).tasks]
  assert sorted(p.name for p in out.iterdir()) == sorted(
    f"{t}-{mode}.jsonl-00000-of-00001" for t in tasks for mode in ("predict", "score")
  )


def test_predictions_rank_the_choices_and_scores_score_the_targets_as_transformers(inferred):
  import seqio

  out, hf = inferred
  task = seqio.get_mixture_or_task(TASK_MIXTURE).tasks[0]
  data = eval_data.load_task(task, max_examples=2)
  predicted = _read(out / f"{task.name}-predict.jsonl-00000-of-00001")
  scored = _read(out / f"{task.name}-score.jsonl-00000-of-00001")
  assert len(predicted) == len(scored) == 2
  for k in range(2):
    for line in (predicted[k], scored[k]):
      assert line["inputs"]["inputs_pretokenized"] == data.input_texts[k]
      assert line["inputs"]["targets_pretokenized"] == data.target_texts[k]
    reference = _reference_scores(hf, data.inputs[k], data.choices[k])
    np.testing.assert_allclose(predicted[k]["aux"]["choice_scores"], reference, atol=1e-4)
    assert predicted[k]["prediction"] == data.choice_texts[k][int(np.argmax(reference))]
    np.testing.assert_allclose(scored[k]["score"], reference[data.answer_idx[k]], atol=1e-4)
