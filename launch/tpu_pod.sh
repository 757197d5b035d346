#!/usr/bin/env bash
# Run a t0jax command on every worker of a Cloud TPU VM slice (pod slice), with gcloud.
#
#   launch/tpu_pod.sh --name t0-3b --zone us-central2-b --accelerator_type v4-128 [--spot] \
#     -- t0jax train --gin_file=gin/experiments/t0_3b.gin --model_dir=/mnt/t0/runs/t0_3b \
#        --gin.INITIAL_CHECKPOINT_PATH=\"/mnt/t0/t5-xl-lm-adapt\"
#
# 1. reuses the slice NAME if it exists, else creates it (--spot: a Spot slice);
# 2. ships this checkout (git HEAD) to every worker and installs it with jax[tpu] in a venv;
# 3. runs --setup (e.g. mounting the bucket that holds MODEL_DIR) and then the command on all
#    workers at once, streaming their output here; JAX finds its coordinator from the TPU
#    metadata, so the command needs no multi-host flags;
# 4. --spot: when the slice is preempted, deletes it, creates it again, reinstalls and reruns
#    the same command, which resumes from the last checkpoint in MODEL_DIR.
# MODEL_DIR must be a directory every worker sees and that outlives the slice (a gcsfuse mount
# of a bucket, Filestore): each worker writes its part of every checkpoint there.
# --dry_run prints every command instead of running it.
set -euo pipefail

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --name NAME               TPU VM name (required)
  --zone ZONE               e.g. us-central2-b (required)
  --accelerator_type TYPE   e.g. v3-512, v4-128, v5p-256, v5litepod-64, v6e-256 (required)
  --project PROJECT         gcloud project (default: gcloud's configured project)
  --version VERSION         TPU software version (default: tpu-ubuntu2204-base;
                            v5e: v2-alpha-tpuv5-lite, v6e: v2-alpha-tpuv6e, v5p: v2-alpha-tpuv5)
  --spot                    create a Spot slice; recreate it and resume after preemption
  --max_restarts N          give up after N recreations (default 20)
  --setup CMD               run CMD on every worker before the command (e.g. a gcsfuse mount)
  --delete_when_done        delete the slice after the command succeeds
  --dry_run                 print the commands, run nothing
EOF
}

die() { echo "tpu_pod.sh: $*" >&2; exit 2; }

NAME="" ZONE="" TYPE="" PROJECT="" VERSION="tpu-ubuntu2204-base" SPOT=0 MAX_RESTARTS=20
SETUP="" DELETE=0 DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME="${2:?--name needs a value}"; shift 2 ;;
    --zone) ZONE="${2:?--zone needs a value}"; shift 2 ;;
    --accelerator_type) TYPE="${2:?--accelerator_type needs a value}"; shift 2 ;;
    --project) PROJECT="${2:?--project needs a value}"; shift 2 ;;
    --version) VERSION="${2:?--version needs a value}"; shift 2 ;;
    --spot) SPOT=1; shift ;;
    --max_restarts) MAX_RESTARTS="${2:?--max_restarts needs a value}"; shift 2 ;;
    --setup) SETUP="${2:?--setup needs a value}"; shift 2 ;;
    --delete_when_done) DELETE=1; shift ;;
    --dry_run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (the command to run goes after --; see --help)" ;;
  esac
done
[ -n "$NAME" ] || die "--name is required"
[ -n "$ZONE" ] || die "--zone is required"
[ -n "$TYPE" ] || die "--accelerator_type is required (e.g. v4-128)"
[[ "$TYPE" =~ ^(v2|v3|v4|v5p|v5litepod|v5e|v6e)-[0-9]+$ ]] \
  || die "--accelerator_type '$TYPE' is not a TPU type such as v3-512, v4-128, v5p-256, v6e-64"
[[ "$MAX_RESTARTS" =~ ^[0-9]+$ ]] || die "--max_restarts '$MAX_RESTARTS' is not a number"
[ $# -gt 0 ] || die "give the command to run after --, e.g. -- t0jax train --gin_file=..."

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE")
[ -n "$PROJECT" ] && WHERE+=(--project="$PROJECT")
REMOTE_DIR='$HOME/t0jax'
USER_CMD="$(printf '%q ' "$@")"
USER_CMD="${USER_CMD% }"

# Print (dry run) or run one command line, echoing it first so logs show what happened.
run() {
  echo "+ $*"
  [ "$DRY" = 1 ] || bash -c "$*"
}
# Single-quote a string for the shell (readable in --dry_run output, unlike printf %q).
q() { local s="${1//\'/\'\\\'\'}"; printf "'%s'" "$s"; }

create_or_reuse() {
  local create
  create="${GCLOUD[*]} create $NAME ${WHERE[*]} --accelerator-type=$TYPE --version=$VERSION"
  [ "$SPOT" = 1 ] && create+=" --spot"
  run "${GCLOUD[*]} describe $NAME ${WHERE[*]} --format='value(state)' >/dev/null 2>&1 || $create"
}

install_everywhere() {
  local tarball="/tmp/t0jax-$NAME.tar.gz"
  run "git -C $(q "$ROOT") archive --format=tar.gz -o $tarball HEAD"
  run "${GCLOUD[*]} scp $tarball $NAME:t0jax.tar.gz ${WHERE[*]} --worker=all"
  local install="rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf t0jax.tar.gz -C $REMOTE_DIR"
  install+=" && python3 -m venv $REMOTE_DIR/.venv && $REMOTE_DIR/.venv/bin/pip install -q -U pip"
  install+=" && $REMOTE_DIR/.venv/bin/pip install -q -e $REMOTE_DIR \"jax[tpu]>=0.10.2,<0.11\""
  run "${GCLOUD[*]} ssh $NAME ${WHERE[*]} --worker=all --command=$(q "$install")"
  if [ -n "$SETUP" ]; then
    run "${GCLOUD[*]} ssh $NAME ${WHERE[*]} --worker=all --command=$(q "$SETUP")"
  fi
}

run_everywhere() {
  # Every worker runs the same command; only process 0 logs beyond errors (t0jax's rule).
  local remote="cd $REMOTE_DIR && source .venv/bin/activate && export TF_CPP_MIN_LOG_LEVEL=2"
  remote+=" && $USER_CMD"
  run "${GCLOUD[*]} ssh $NAME ${WHERE[*]} --worker=all --command=$(q "$remote")"
}

preempted() {
  local state
  state="$("${GCLOUD[@]}" describe "$NAME" "${WHERE[@]}" --format='value(state)' 2>/dev/null || true)"
  [ "$state" = "PREEMPTED" ] || [ "$state" = "TERMINATED" ] || [ -z "$state" ]
}

create_or_reuse
install_everywhere
if [ "$SPOT" = 1 ] && [ "$DRY" = 1 ]; then
  run_everywhere
  echo "# --spot: when the command fails because the slice was preempted, delete the slice,"
  echo "# create and install it again (the commands above) and rerun the same command, which"
  echo "# resumes from the last checkpoint; at most $MAX_RESTARTS times:"
  echo "+ ${GCLOUD[*]} delete $NAME ${WHERE[*]} --quiet"
elif [ "$SPOT" = 1 ]; then
  restarts=0
  until run_everywhere; do
    preempted || { echo "tpu_pod.sh: the command failed and the slice was not preempted;" \
                        "not retrying." >&2; exit 1; }
    restarts=$((restarts + 1))
    [ "$restarts" -le "$MAX_RESTARTS" ] || { echo "tpu_pod.sh: preempted $restarts times;" \
                                               "giving up." >&2; exit 1; }
    echo "tpu_pod.sh: slice $NAME was preempted; recreating it (restart $restarts)." >&2
    run "${GCLOUD[*]} delete $NAME ${WHERE[*]} --quiet"
    create_or_reuse
    install_everywhere
  done
else
  run_everywhere
fi
if [ "$DELETE" = 1 ]; then
  run "${GCLOUD[*]} delete $NAME ${WHERE[*]} --quiet"
fi
