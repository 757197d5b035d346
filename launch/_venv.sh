# Sourced by the launch scripts: create .venv in the checkout if missing, install t0jax into it.
# Usage: source launch/_venv.sh EXTRAS   (EXTRAS e.g. "test", or "" for none: always give it, or
# the sourcing script's own first argument is taken for it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
extras="${1:-}"
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp=".venv/.t0jax-installed${extras:+-$extras}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall only when setup.py changed since the last install into this venv.
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e "$spec"
  touch "$stamp"
fi
# JAX on CPU unless the user says otherwise; TensorFlow never sees a GPU (it would grab its memory).
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
PATH="$ROOT/.venv/bin:$PATH"
