#!/usr/bin/env bash
# The README's test command: set up (idempotent), start the servers the tests need, lint,
# type-check, and run every test tier in both environments.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh

echo "[test] ruff"
.venv/bin/ruff check eyeops inference tests bench kfp_pipelines
.venv-detectors/bin/ruff check detectors
echo "[test] mypy (strict)"
.venv/bin/mypy
(cd detectors && ../.venv-detectors/bin/mypy)
echo "[test] pytest: main environment (unit, model, in-process, integration)"
.venv/bin/python -m pytest tests "$@"
echo "[test] pytest: detectors environment"
(cd detectors && ../.venv-detectors/bin/python -m pytest)
