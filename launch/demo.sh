#!/usr/bin/env bash
# The embedded default, end to end on CPU: train the tiny T5 on the synthetic demo mixture
# (gin/experiments/demo.gin), then evaluate zero-shot by rank classification and print the table:
# the held-out story family (never trained on) against chance and the held-in families.
#   bash launch/demo.sh              the demo (about two minutes of training on two idle cores)
#   bash launch/demo.sh --control    also train the single-family control
#                                    (gin/experiments/demo_control.gin) and compare held-out medians
#   bash launch/demo.sh --ablation   also train T0's ablations in miniature (1, 2, 3 or 4 of the 5
#                                    held-in families; one prompt per family) and draw the held-out
#                                    median against them (runs/demo_ablation/ablation.png, ~8 min)
# Other arguments go to `t0jax train` (e.g. --gin.SEED=1). Runs again? Training resumes from its
# last checkpoint (or is already done) and the evaluation is redone. Output in runs/demo and
# runs/demo_control (override with T0JAX_DEMO_DIR).
# The extras argument is given even when empty: a sourced script sees our own arguments as $1.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" ""
out="${T0JAX_DEMO_DIR:-runs/demo}"
control=0
ablation=0
args=()
for arg in "$@"; do
  case "$arg" in
    --control) control=1 ;;
    --ablation) ablation=1 ;;
    *) args+=("$arg") ;;
  esac
done

# run GIN DIR MIXTURE [TRAIN FLAG...]: train then evaluate MIXTURE; prints the seconds each took.
run() {
  local gin="$1" dir="$2" mixture="$3" start=$SECONDS
  shift 3
  t0jax train --gin_file="$gin" --model_dir="$dir" "$@" ${args[@]+"${args[@]}"}
  local trained=$SECONDS
  t0jax eval --checkpoint "$dir" --mixture "$mixture" --output_dir "$dir/eval"
  echo "$dir: training $((trained - start)) s, evaluation $((SECONDS - trained)) s"
}

run gin/experiments/demo.gin "$out" demo_eval_score_eval
echo
cat "$out/eval/results.md"
if [ "$control" = 1 ]; then
  run gin/experiments/demo_control.gin "${out}_control" demo_heldout_score_eval
  python - "$out/eval/results.json" "${out}_control/eval/results.json" <<'PY'
import json, sys
demo, control = (json.load(open(p))["datasets"]["demo_story"] for p in sys.argv[1:])
median = lambda d: d["original_task"]["accuracy"]["median"]
print(f"held-out story median: multitask {median(demo):.1f} %, single-family control "
      f"{median(control):.1f} %, chance {demo['chance']:.1f} %")
PY
fi
if [ "$ablation" = 1 ]; then
  # The same model, steps and batch as the demo on parts of its mixture (tasks/demo/controls.py):
  # the first n held-in families (in catalogue order), and every family with one prompt.
  abl="${out}_ablation"
  for n in 1 2 3 4; do
    run gin/experiments/demo_control.gin "$abl/families_$n" demo_heldout_score_eval \
      --gin.MIXTURE_OR_TASK_NAME="'demo_train_${n}_families'"
  done
  run gin/experiments/demo_control.gin "$abl/one_prompt" demo_heldout_score_eval \
    --gin.MIXTURE_OR_TASK_NAME="'demo_train_one_prompt'"
  python - "$out" "$abl" <<'PY'
import json, os, sys
from t0jax.evaluate import report
demo, abl = sys.argv[1:]
load = lambda d: json.load(open(os.path.join(d, "eval", "results.json")))
full = load(demo)
panels = {
  "held-in families (all prompts)": [(str(n), load(f"{abl}/families_{n}")) for n in (1, 2, 3, 4)]
  + [("5", full)],
  "prompts per family (5 families)": [("1", load(f"{abl}/one_prompt")), ("all", full)],
}
print("wrote", report.write_ablation(panels, "demo_story", abl))
print(open(os.path.join(abl, "ablation.md")).read())
PY
fi
