#!/usr/bin/env bash
#SBATCH --job-name=t0jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --output=t0jax-%j.out
# Run a t0jax command on several GPU nodes under SLURM: one process per GPU (default) or one
# per node.
#
#   launch/gpu_slurm.sh --nodes 2 -- t0jax train --gin_file=gin/experiments/t0_3b.gin \
#     --model_dir=/shared/runs/t0_3b --gin.INITIAL_CHECKPOINT_PATH=\"/shared/t5-xl-lm-adapt\"
#
# From a login node it submits itself with sbatch; inside the job (or when sbatch runs this file
# directly: `sbatch launch/gpu_slurm.sh -- t0jax train ...`, using the #SBATCH lines above) it
# starts the processes with srun. Each process gets JAX_COORDINATOR_ADDRESS (the job's first
# node), JAX_NUM_PROCESSES and JAX_PROCESS_ID, and with one process per GPU also
# JAX_LOCAL_DEVICE_IDS, which `t0jax train` / `t0jax eval` read. MODEL_DIR must be on a
# filesystem every node mounts. --dry_run prints the commands instead of running them.
set -euo pipefail

usage() {
  sed -n '8,20p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --nodes N              nodes (default: the job's, else 2)
  --gpus_per_node G      GPUs per node (default 8)
  --per gpu|node         one process per GPU (default) or one per node using all its GPUs
  --partition P          sbatch --partition
  --account A            sbatch --account
  --time T               sbatch --time, e.g. 48:00:00
  --port P               coordinator port (default: 61440 + job id mod 4096, as JAX chooses)
  --venv DIR             virtual environment to activate on the nodes (default: .venv here)
  --mem_fraction F       XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.92; JAX's own is 0.75)
  --dry_run              print the commands, run nothing
EOF
}

die() { echo "gpu_slurm.sh: $*" >&2; exit 2; }

ROOT="${T0JAX_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
NODES="" GPUS=8 PER=gpu PARTITION="" ACCOUNT="" TIME="" PORT="" VENV="$ROOT/.venv"
MEM_FRACTION=0.92 DRY=0 ARGS=()
for a in "$@"; do [ "$a" = --dry_run ] || ARGS+=("$a"); done  # what the job itself receives
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES="${2:?--nodes needs a value}"; shift 2 ;;
    --gpus_per_node) GPUS="${2:?--gpus_per_node needs a value}"; shift 2 ;;
    --per) PER="${2:?--per needs gpu or node}"; shift 2 ;;
    --partition) PARTITION="${2:?--partition needs a value}"; shift 2 ;;
    --account) ACCOUNT="${2:?--account needs a value}"; shift 2 ;;
    --time) TIME="${2:?--time needs a value}"; shift 2 ;;
    --port) PORT="${2:?--port needs a value}"; shift 2 ;;
    --venv) VENV="${2:?--venv needs a value}"; shift 2 ;;
    --mem_fraction) MEM_FRACTION="${2:?--mem_fraction needs a value}"; shift 2 ;;
    --dry_run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (the command to run goes after --; see --help)" ;;
  esac
done
[ "$PER" = gpu ] || [ "$PER" = node ] || die "--per must be 'gpu' or 'node', not '$PER'"
[[ "$GPUS" =~ ^[1-9][0-9]*$ ]] || die "--gpus_per_node '$GPUS' is not a positive number"
[ -z "$NODES" ] || [[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes '$NODES' is not a positive number"
[ -z "$PORT" ] || [[ "$PORT" =~ ^[0-9]+$ ]] || die "--port '$PORT' is not a number"
[ $# -gt 0 ] || die "give the command to run after --, e.g. -- t0jax train --gin_file=..."

TASKS_PER_NODE=$([ "$PER" = gpu ] && echo "$GPUS" || echo 1)
# Quote for display only where needed, in single quotes (easier to read than printf %q).
shq() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then printf '%s' "$1"
  else local s="${1//\'/\'\\\'\'}"; printf "'%s'" "$s"; fi
}
run() {
  printf '+'; for a in "$@"; do printf ' '; shq "$a"; done; printf '\n'
  [ "$DRY" = 1 ] || "$@"
}

if [ -z "${SLURM_JOB_ID:-}" ]; then
  # On a login node: submit this same script; inside the job it takes the branch below.
  SB=(sbatch --nodes="${NODES:-2}" --ntasks-per-node="$TASKS_PER_NODE" --gpus-per-node="$GPUS")
  [ -n "$PARTITION" ] && SB+=(--partition="$PARTITION")
  [ -n "$ACCOUNT" ] && SB+=(--account="$ACCOUNT")
  [ -n "$TIME" ] && SB+=(--time="$TIME")
  SB+=(--chdir="$ROOT" "$ROOT/launch/gpu_slurm.sh" "${ARGS[@]}")
  run "${SB[@]}"
  exit 0
fi

# Inside the allocation.
NODELIST="${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-}}"
[ -n "$NODELIST" ] || die "SLURM_JOB_NODELIST is not set: run this inside a SLURM job"
first_host() {  # the first host of a SLURM node list: gpu[003-006,010] -> gpu003
  if command -v scontrol >/dev/null 2>&1; then
    scontrol show hostnames "$1" | head -n 1
  elif [[ "$1" =~ ^([^,\[]+)\[([0-9]+) ]]; then
    echo "${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
  else
    echo "${1%%,*}"
  fi
}
NUM_NODES="${NODES:-${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}}"
PORT="${PORT:-$((SLURM_JOB_ID % 4096 + 61440))}"
COORDINATOR="$(first_host "$NODELIST"):$PORT"
NTASKS=$((NUM_NODES * TASKS_PER_NODE))

# Per task: SLURM's own ids become JAX's. Single quotes: expanded by each task, not here.
TASK_ENV='export JAX_NUM_PROCESSES=$SLURM_NTASKS JAX_PROCESS_ID=$SLURM_PROCID'
[ "$PER" = gpu ] && TASK_ENV+=' JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID'
[ -f "$VENV/bin/activate" ] && TASK_ENV="source $VENV/bin/activate && $TASK_ENV"
export JAX_COORDINATOR_ADDRESS="$COORDINATOR" XLA_PYTHON_CLIENT_MEM_FRACTION="$MEM_FRACTION"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
echo "# coordinator $COORDINATOR, $NTASKS processes ($TASKS_PER_NODE per node on $NUM_NODES nodes)"
echo "# JAX_COORDINATOR_ADDRESS=$COORDINATOR XLA_PYTHON_CLIENT_MEM_FRACTION=$MEM_FRACTION"
run srun --nodes="$NUM_NODES" --ntasks="$NTASKS" --ntasks-per-node="$TASKS_PER_NODE" \
  --gpus-per-node="$GPUS" --label --kill-on-bad-exit=1 \
  bash -c "$TASK_ENV && cd $(printf '%q' "$ROOT") && exec \"\$@\"" t0jax-task "$@"
