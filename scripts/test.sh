#!/usr/bin/env bash
# The README's test command: set up (idempotent), start the servers the tests need, lint,
# type-check, and run every test tier in both environments, then build and run the images.
#     bash scripts/test.sh            # everything (CI)
#     bash scripts/test.sh --fast     # lint, types, docs, the unit and process tiers only (a few minutes)
# Other arguments go to the main environment's pytest. Each tier prints its time.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [ "${1:-}" = --fast ]; then
  fast=1
  shift
fi
times=()
tier() {  # name, command...: run one tier and record its time (a failing tier too, then stop)
  local name=$1 start=$SECONDS status=0
  shift
  echo "[test] $name"
  "$@" || status=$?
  times+=("$name: $((SECONDS - start)) s$([ "$status" = 0 ] || echo " (FAILED)")")
  echo "[test] $name: $((SECONDS - start)) s"
  return "$status"
}
report() {
  echo "[test] tier times:"
  printf '[test]   %s\n' "${times[@]}"
}
trap report EXIT

tier "set-up" bash scripts/setup.sh
[ "$fast" = 1 ] || tier "services" bash scripts/services.sh
tier "ruff" bash -c ".venv/bin/ruff check eyeops inference tests bench kfp_pipelines images && .venv-detectors/bin/ruff check detectors"
tier "docs: the site builds strictly (no broken link, no page left out)" bash scripts/docs.sh
# mypy's incremental cache, kept outside the checkout: it checks each file's hash, so a fresh clone
# (CI's) re-checks only what changed since the last run on this machine (about 70 s → 5 s here)
CACHE=${EYEOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/eyeops}
tier "mypy (strict)" bash -c "MYPY_CACHE_DIR='$CACHE/mypy-main' .venv/bin/mypy \
  && cd detectors && MYPY_CACHE_DIR='$CACHE/mypy-detectors' ../.venv-detectors/bin/mypy"
if [ "$fast" = 1 ]; then
  # the fast tiers by folder (tests/tiers.py): unit, the test-data renderers' own unit tests, process
  tier "pytest: unit and process (main environment)" \
    .venv/bin/python -m pytest tests/unit tests/stress tests/foreign tests/process -q "$@"
  tier "pytest: unit (detectors environment)" bash -c "cd detectors && ../.venv-detectors/bin/python -m pytest -q -m unit"
  exit 0
fi
# --durations: the slowest tests, named in every CI log (the run is asked to stay under 40 minutes)
tier "pytest: main environment (unit, process, in-process, model, integration)" \
  .venv/bin/python -m pytest tests --ignore=tests/containers --durations=25 "$@"
tier "pytest: detectors environment" bash -c "cd detectors && ../.venv-detectors/bin/python -m pytest"
# The containers tier: every image built with a real Docker engine (offline builds from host-made
# wheelhouses) and run as the chart runs it. EYEOPS_SKIP_CONTAINERS=1 leaves it out of a quick run.
if [ "${EYEOPS_SKIP_CONTAINERS:-0}" != 1 ]; then
  tier "containers: build every image" bash scripts/images.sh
  tier "containers: run each hardened" .venv/bin/python -m pytest tests/containers -p no:cacheprovider
fi
