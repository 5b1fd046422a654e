#!/usr/bin/env bash
# The README's test command: set up (idempotent), start the servers the tests need, lint,
# type-check, and run every test tier in both environments, then build and run the images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh

echo "[test] ruff"
.venv/bin/ruff check eyeops inference tests bench kfp_pipelines images
.venv-detectors/bin/ruff check detectors
echo "[test] docs: the site builds strictly (no broken link, no page left out)"
bash scripts/docs.sh
echo "[test] mypy (strict)"
.venv/bin/mypy
(cd detectors && ../.venv-detectors/bin/mypy)
echo "[test] pytest: main environment (unit, model, in-process, integration)"
.venv/bin/python -m pytest tests --ignore=tests/containers "$@"
echo "[test] pytest: detectors environment"
(cd detectors && ../.venv-detectors/bin/python -m pytest)
# The containers tier: every image built with a real Docker engine (offline builds from host-made
# wheelhouses) and run as the chart runs it. EYEOPS_SKIP_CONTAINERS=1 leaves it out of a quick run.
if [ "${EYEOPS_SKIP_CONTAINERS:-0}" != 1 ]; then
  echo "[test] containers: build every image, then run each hardened"
  start=$SECONDS
  bash scripts/images.sh
  .venv/bin/python -m pytest tests/containers -p no:cacheprovider
  echo "[test] containers tier: $((SECONDS - start)) s"
fi
