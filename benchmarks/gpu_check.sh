#!/usr/bin/env bash
# The one prepared check for a lent GPU machine: steps/s of the reference config for 1 seed,
# 16 seeds and a 64-member sweep, with a short profile hint (benchmarks/gpu_check.py).
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --smoke    # anywhere: tiny networks, checks the script
#
# Nothing can be downloaded there. Its image holds JAX (0.11, CUDA), flax, optax, chex and
# orbax; the pure-Python wheels it lacks travel in .whl/ (gitignored), made here with
#   pip download --no-deps -d .whl ml-collections==1.1.0 absl-py==2.5.1 gymnasium==1.4.0 \
#       cloudpickle==3.1.3 Farama-Notifications==0.0.6
# and carried with the run (carry: [".whl"]). PyYAML (which ml-collections imports) is not
# pure Python; flax needs it too, so the image has it. Writes $OUT/gpu_check.json when $OUT is set.
# Ends within 8 minutes (a hard timeout of 470 s on the Python part; GPU_CHECK_TIMEOUT changes
# it: --smoke on a busy CPU, where each of its four compiles can take a minute or two, needs
# more). The numbers print as each case finishes.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# module:distribution for each pure-Python dependency the image may lack.
for pair in absl:absl-py ml_collections:ml-collections cloudpickle:cloudpickle \
            farama_notifications:Farama-Notifications gymnasium:gymnasium; do
  mod="${pair%%:*}"; dist="${pair##*:}"
  "$PY" -c "import $mod" 2>/dev/null && continue
  if ! "$PY" -m pip install --quiet --no-index --no-deps --find-links=.whl "$dist" 2>/dev/null; then
    # No pip (or no wheel for it): a pure-Python wheel also imports straight from its zip.
    whl=$(ls .whl/ 2>/dev/null | grep -i "^$(echo "$dist" | tr '-' '_')-" | head -1)
    if [[ -n "$whl" ]]; then
      export PYTHONPATH="$PYTHONPATH:$PWD/.whl/$whl"
    else
      echo "missing $dist: no wheel in .whl/ (see the header of this script)" >&2
    fi
  fi
done

json=()
[[ -n "${OUT:-}" ]] && json=(--json="$OUT/gpu_check.json")
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
timeout "${GPU_CHECK_TIMEOUT:-470}" "$PY" -m benchmarks.gpu_check "$@" "${json[@]}"
