#!/usr/bin/env bash
# The embedded default, end to end on CPU: train the tiny T5 on the synthetic demo mixture
# (gin/experiments/demo.gin), then evaluate zero-shot by rank classification and print the table:
# the held-out story family (never trained on) against chance and the held-in families.
#   bash launch/demo.sh              the demo (about two minutes of training on two idle cores)
#   bash launch/demo.sh --control    also train the single-family control
#                                    (gin/experiments/demo_control.gin) and compare held-out medians
# Other arguments go to `t0jax train` (e.g. --gin.SEED=1). Runs again? Training resumes from its
# last checkpoint (or is already done) and the evaluation is redone. Output in runs/demo and
# runs/demo_control (override with T0JAX_DEMO_DIR).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
out="${T0JAX_DEMO_DIR:-runs/demo}"
control=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--control" ]; then control=1; else args+=("$arg"); fi
done

# train GIN DIR: train then evaluate; prints the seconds each took.
run() {
  local gin="$1" dir="$2" mixture="$3" start=$SECONDS
  t0jax train --gin_file="$gin" --model_dir="$dir" ${args[@]+"${args[@]}"}
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
