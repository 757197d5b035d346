#!/usr/bin/env bash
# The embedded default, end to end on CPU: train the tiny T5 on the synthetic demo mixture
# (gin/experiments/demo.gin), then evaluate zero-shot by rank classification and print the table.
# Runs again? Training resumes from its last checkpoint (or is already done) and the evaluation
# is redone. Output in runs/demo (override with T0JAX_DEMO_DIR).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
out="${T0JAX_DEMO_DIR:-runs/demo}"
t0jax train --gin_file=gin/experiments/demo.gin --model_dir="$out" "$@"
t0jax eval --checkpoint "$out" --mixture demo_eval_score_eval --output_dir "$out/eval"
echo
cat "$out/eval/results.md"
