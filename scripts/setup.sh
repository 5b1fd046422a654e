#!/usr/bin/env bash
# One set-up for a fresh machine: system packages, the main environment (.venv), the Triton model's
# environment (.venv-triton, numpy<2 for the 2.51 Python-backend stub), the detectors environment
# (.venv-detectors, alibi-detect's numpy<2 pins), the documentation builder (.venv-docs, MkDocs), and
# the tritonserver binary (.triton).
# Debian packages: Tesseract, fonts, promtool/amtool (Prometheus, Alertmanager) to test alert rules, and
# Chromium, which the review console's browser tests drive (Playwright, without its own browsers).
# Every environment is installed from its lock (images/constraints-*.txt, made by scripts/lock.sh),
# the same files the images install from, so this machine tests what the images ship.
# Idempotent: a second run only checks (and brings a drifted environment back to its lock).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TRITON_WHEEL_VERSION=0.7.0

log() { printf '[setup] %s\n' "$*"; }

apt_packages="tesseract-ocr prometheus prometheus-alertmanager chromium fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-noto-mono fonts-roboto-unhinted fonts-croscore fonts-crosextra-carlito fonts-urw-base35 fonts-open-sans fonts-lato fonts-inconsolata fonts-hack fonts-firacode fonts-cantarell fonts-go fonts-jetbrains-mono fonts-noto-core fonts-noto-extra fonts-quicksand fonts-dosis fonts-jura fonts-ebgaramond fonts-mplus fonts-agave fonts-monoid fonts-paratype fonts-league-mono fonts-karla fonts-manrope fonts-vollkorn fonts-play fonts-roboto-slab fonts-comic-neue fonts-tuffy fonts-adf-universalis fonts-adf-berenis fonts-adf-verana fonts-adf-libris fonts-adf-baskervald fonts-sil-andika fonts-sil-gentiumplus fonts-oldstandard fonts-cmu fonts-osifont fonts-opendin fonts-yanone-kaffeesatz fonts-averia-sans-gwf fonts-averia-serif-gwf fonts-beteckna fonts-gfs-didot fonts-junction fonts-bebas-neue fonts-fanwood fonts-b612 fonts-ocr-b fonts-mononoki fonts-anonymous-pro fonts-oxygen fonts-cabin fonts-comfortaa fonts-league-spartan fonts-linuxlibertine fonts-crosextra-caladea fonts-sil-charis fonts-inter fonts-clear-sans fonts-hermit fonts-fantasque-sans fonts-3270 fonts-adf-gillius fonts-routed-gothic fonts-dseg fonts-tiresias fonts-national-park fonts-roadgeek fonts-sora fonts-quattrocento fonts-opendyslexic fonts-yrsa-rasa fonts-cardo fonts-ocr-a fonts-monofur fonts-glasstty fonts-sixtyfour fonts-gnutypewriter fonts-pc"
missing=""
for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  log "installing Debian packages:$missing"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# torch first, by this exact spelling: it resolves to the machine's CPU build (see README).
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -c images/constraints-main.txt -e ".[server,dev]"
# The PP-OCRv4 recogniser's model file (the offline eval's peer), without the wheel's own dependencies
# (opencv-python would sit beside our opencv-python-headless); the lock pins its version.
.venv/bin/pip install -q --no-deps -c images/constraints-main.txt rapidocr-onnxruntime

if [ ! -x .triton/pytriton/tritonserver/backends/python/triton_python_backend_stub ]; then
  log "extracting tritonserver from nvidia-pytriton==$TRITON_WHEEL_VERSION (binary only; its Python side pins numpy<2)"
  mkdir -p .cache/wheels .triton
  .venv/bin/pip download -q --no-deps "nvidia-pytriton==$TRITON_WHEEL_VERSION" -d .cache/wheels
  wheel=$(ls .cache/wheels/nvidia_pytriton-"$TRITON_WHEEL_VERSION"-*.whl | head -1)
  .venv/bin/python - "$wheel" <<'PYEOF'
import sys, zipfile, os, stat
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        if info.filename.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/")):
            z.extract(info, ".triton")
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(os.path.join(".triton", info.filename), mode or 0o644)
PYEOF
  chmod +x .triton/pytriton/tritonserver/bin/tritonserver .triton/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub
  cp .triton/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub .triton/pytriton/tritonserver/backends/python/
fi

if [ ! -x .venv-triton/bin/python ]; then
  log "creating .venv-triton (the Triton Python-backend model's environment: numpy<2)"
  "$PY" -m venv .venv-triton
  .venv-triton/bin/pip install -q --upgrade pip
fi
.venv-triton/bin/python -c "import torch" 2>/dev/null || .venv-triton/bin/pip install -q torch==2.13.0
.venv-triton/bin/pip install -q -c images/constraints-triton.txt -r inference/triton/requirements.txt

if [ ! -x .venv-docs/bin/python ]; then
  log "creating .venv-docs (MkDocs, for the documentation site)"
  "$PY" -m venv .venv-docs
  .venv-docs/bin/pip install -q --upgrade pip
fi
.venv-docs/bin/pip install -q -c images/constraints-docs.txt -r docs/requirements.txt
if [ ! -x .venv-detectors/bin/python ]; then
  log "creating .venv-detectors (alibi-detect pins numpy<2)"
  "$PY" -m venv .venv-detectors
  .venv-detectors/bin/pip install -q --upgrade pip
fi
.venv-detectors/bin/pip install -q -c images/constraints-detectors.txt -e "detectors[dev,pipelines]"
log "done"
