#!/usr/bin/env bash
# Regenerate the four locks (images/constraints-{main,triton,detectors,docs}.txt) from what
# pyproject.toml, detectors/pyproject.toml and inference/triton/requirements.txt ask for: each
# environment is resolved afresh in a throw-away venv, then frozen. Set-up, CI and every image
# install with `-c <lock>`, so run this (and commit its output) whenever a dependency changes:
#     bash scripts/lock.sh            # all four
#     bash scripts/lock.sh main       # one of main | triton | detectors | docs
# torch is left out of the locks: it is installed first, as exactly `torch==2.13.0` (the machine's
# CPU build); pyproject pins it exactly, so nothing can resolve another.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
which=${1:-all}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

freeze() {  # venv, lock file, header line
  { printf '# %s\n' "$3" \
      "Lock: exact versions, installed with \`pip install -c\` by scripts/setup.sh and the Dockerfiles." \
      "Regenerate with: bash scripts/lock.sh (never by hand); torch is installed apart, as torch==2.13.0."
    "$1/bin/pip" freeze --exclude-editable | grep -v -i -E '^(torch|nvidia-[a-z0-9-]+|triton|eyeops|eyeops-detectors)(==| @)' \
      | LC_ALL=C sort -f
  } > "$2.new"
  mv "$2.new" "$2"
  echo "[lock] wrote $2 ($(grep -c '==' "$2") packages)"
}

fresh() {  # name -> path of a new venv with torch where the environment needs it
  "$PY" -m venv "$tmp/$1"
  "$tmp/$1/bin/pip" install -q --upgrade pip
  echo "$tmp/$1"
}

if [ "$which" = all ] || [ "$which" = main ]; then
  v=$(fresh main)
  "$v/bin/pip" install -q torch==2.13.0
  "$v/bin/pip" install -q ".[server,dev]"
  "$v/bin/pip" install -q --no-deps rapidocr-onnxruntime==1.4.4  # the PP-OCRv4 peer's model (setup.sh)
  freeze "$v" images/constraints-main.txt "The main environment (.venv; images ocr-transformer, lens, pipelines)."
fi
if [ "$which" = all ] || [ "$which" = triton ]; then
  v=$(fresh triton)
  "$v/bin/pip" install -q torch==2.13.0
  "$v/bin/pip" install -q -r inference/triton/requirements.txt
  freeze "$v" images/constraints-triton.txt "The Triton Python-backend model's environment (.venv-triton; image triton)."
fi
if [ "$which" = all ] || [ "$which" = docs ]; then
  v=$(fresh docs)
  "$v/bin/pip" install -q -r docs/requirements.txt
  freeze "$v" images/constraints-docs.txt "The documentation site's builder (.venv-docs; scripts/docs.sh)."
fi
if [ "$which" = all ] || [ "$which" = detectors ]; then
  v=$(fresh detectors)
  "$v/bin/pip" install -q "./detectors[dev,pipelines]"
  freeze "$v" images/constraints-detectors.txt "The detectors environment (.venv-detectors; image detectors)."
fi
