#!/usr/bin/env bash
# Build every eyeops image with a real container engine, offline inside the builds:
#   1. a Docker daemon (started here if none answers; Debian's docker.io);
#   2. the base image: $BASE_IMAGE if set (e.g. python:3.11.7-slim-bookworm pinned by the digest your
#      registry shows), else a Debian bookworm base made here with debootstrap and `docker import`ed
#      (eyeops/debian-base:bookworm; no image registry needed);
#   3. wheelhouses built on the host from the locks (images/constraints-*.txt), one per environment,
#      with the eyeops wheels themselves: no build reaches PyPI;
#   4. the images (ocr-transformer, lens, console, pipelines, gateway from ./Dockerfile; triton;
#      detectors), each tagged eyeops/<name>:<chart appVersion>;
#   5. a CycloneDX SBOM per image, read from the image's own environment (images/sbom.py run inside it).
# Writes build/images/images.json (tag, id, size, build seconds) and build/images/sbom/<name>.cdx.json.
#     bash scripts/images.sh                  # all images
#     bash scripts/images.sh triton gateway   # only these
# Re-running rebuilds from Docker's layer cache and reuses a wheelhouse whose lock has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=build/images
WHEELS=build/wheelhouse
PIP=${PIP:-.venv/bin/pip}
PY=${PYTHON:-.venv/bin/python}
TRITON_WHEEL_VERSION=0.7.0
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org}  # the base's packages (a local mirror works too)
VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/eyeops/Chart.yaml)
ALL="ocr-transformer lens console pipelines gateway triton detectors"
WANT=${*:-$ALL}
for name in $WANT; do
  case " $ALL " in *" $name "*) ;; *) echo "[images] unknown image '$name'; choose from: $ALL" >&2; exit 2 ;; esac
done

log() { printf '[images] %s\n' "$*"; }
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
DOCKER=${DOCKER:-docker}
# The classic builder: BuildKit would fetch its frontend image from a registry.
export DOCKER_BUILDKIT=0

# -- 1. the engine ------------------------------------------------------------------------------
need=""
command -v dockerd >/dev/null 2>&1 || need="$need docker.io"
[ -n "${BASE_IMAGE:-}" ] || command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
if [ -n "$need" ]; then
  log "installing Debian packages:$need"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi
if ! $DOCKER info >/dev/null 2>&1; then
  log "starting dockerd (log: $OUT/dockerd.log)"
  mkdir -p "$OUT"
  $SUDO setsid nohup dockerd >"$OUT/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 60); do $DOCKER info >/dev/null 2>&1 && break; sleep 1; done
  $DOCKER info >/dev/null 2>&1 || { echo "[images] dockerd did not start; see $OUT/dockerd.log" >&2; exit 1; }
fi
mkdir -p "$OUT/sbom" "$WHEELS"

# -- disk: what earlier builds left, and room for this one ----------------------------------------
# Rebuilt tags leave their old images dangling, a failed build leaves its container, and images of
# an earlier appVersion stay tagged: on a machine that builds every CI run, they fill the disk (a
# CI run failed with "no space left on device" half way through the ocr-transformer image). Remove
# them first, then refuse to start a build that cannot finish, saying how much room there is.
NEED_GB=${EYEOPS_IMAGES_NEED_GB:-20}  # the seven images, their build layers and the SBOM runs
$DOCKER container prune -f >/dev/null 2>&1 || true
stale=$($DOCKER image ls --format '{{.Repository}}:{{.Tag}}' 'eyeops/*' | grep -v -e ":$VERSION\$" -e '^eyeops/debian-base:' || true)
[ -z "$stale" ] || $DOCKER image rm $stale >/dev/null 2>&1 || true
$DOCKER image prune -f >/dev/null 2>&1 || true
ROOT_DIR=$($DOCKER info -f '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)
free_gb() { $SUDO df -P -BG "$1" 2>/dev/null | awk 'NR==2 {sub("G", "", $4); print $4}'; }
for dir in "$ROOT_DIR" "$WHEELS"; do
  free=$(free_gb "$dir")
  if [ -n "$free" ] && [ "$free" -lt "$NEED_GB" ]; then
    echo "[images] only ${free} GB free under $dir; building every image needs about ${NEED_GB} GB." \
      "Free some (docker system prune -a; old checkouts' .venv and build/) or set EYEOPS_IMAGES_NEED_GB" >&2
    exit 1
  fi
done
log "disk: $(free_gb "$ROOT_DIR") GB free for the engine (${NEED_GB} GB needed)"

# -- 2. the base ---------------------------------------------------------------------------------
PYTHON_HOME=/usr/local
if [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE=eyeops/debian-base:bookworm
  PYTHON_HOME=/usr
  if ! $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    trap '$SUDO rm -rf "$rootfs"' EXIT
    log "debootstrap: Debian bookworm (minbase) with Python 3.11 into a scratch folder"
    $SUDO debootstrap --variant=minbase \
      --include=ca-certificates,python3,python3-venv,python-is-python3,libpython3.11,libgomp1 \
      bookworm "$rootfs/root" "$DEBIAN_MIRROR/debian" >"$OUT/debootstrap.log" 2>&1 \
      || { echo "[images] debootstrap failed; see $OUT/debootstrap.log" >&2; exit 1; }
    printf '%s\n' "deb $DEBIAN_MIRROR/debian bookworm main" \
      "deb $DEBIAN_MIRROR/debian bookworm-updates main" \
      "deb $DEBIAN_MIRROR/debian-security bookworm-security main" | $SUDO tee "$rootfs/root/etc/apt/sources.list" >/dev/null
    $SUDO rm -rf "$rootfs/root/var/lib/apt/lists/"* "$rootfs/root/var/cache/apt/archives/"*.deb
    $SUDO tar -C "$rootfs/root" -c . | $DOCKER import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    log "imported $BASE_IMAGE ($($DOCKER image inspect -f '{{.Size}}' "$BASE_IMAGE") bytes)"
  fi
fi

# -- 3. wheelhouses ------------------------------------------------------------------------------
# A wheelhouse is kept, by its stamp, in a cache outside the checkout too, so that a fresh clone on
# the same machine (CI's) finds it instead of asking pip for every wheel again; the images' layers
# then come from the engine's cache as well, since the same wheels make the same layers.
CACHE=${EYEOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/eyeops}/wheelhouse
wheelhouse() {  # name, lock, extra requirements...
  local name=$1 lock=$2; shift 2
  local dir="$WHEELS/$name" stamp kept
  stamp=$( (cat "$lock"; echo "$@") | sha256sum | cut -c1-16)
  kept="$CACHE/$name-$stamp"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
    log "wheelhouse $name: up to date"
  elif [ -f "$kept/.stamp" ] && [ "$(cat "$kept/.stamp")" = "$stamp" ]; then
    log "wheelhouse $name: from the cache ($kept)"
    rm -rf "$dir" && mkdir -p "$WHEELS"
    cp -al "$kept" "$dir" 2>/dev/null || cp -a "$kept" "$dir"
  else
    log "wheelhouse $name: wheels of $lock"
    rm -rf "$dir" && mkdir -p "$dir"
    grep -E '^[A-Za-z0-9].*==' "$lock" > "$dir/requirements.txt"
    printf '%s\n' "$@" >> "$dir/requirements.txt"
    # (pip's complaints about this machine's optional local indexes are noise: only errors are kept)
    "$PIP" wheel -q --no-deps -w "$dir" -r "$dir/requirements.txt" 2> >(grep -v "is ignored: it is neither" >&2)
    cp "$lock" "$dir/constraints.txt"
    echo "$stamp" > "$dir/.stamp"
    # keep this one (the cache holds one wheelhouse per environment: the last lock's)
    if mkdir -p "$CACHE" 2>/dev/null; then
      rm -rf "$CACHE/$name"-* "$kept.tmp"
      { cp -al "$dir" "$kept.tmp" 2>/dev/null || cp -a "$dir" "$kept.tmp"; } && mv "$kept.tmp" "$kept"
    fi
  fi
}
requires() {  # pyproject, output file, extra...: the top-level requirements an image installs
  # The dependencies of the package and of each extra, read from its pyproject.toml: a Dockerfile
  # installs them in a layer of its own, before the package, so that a commit that changes only
  # the code rebuilds the small last layers and reuses the rest from the engine's cache.
  rm -f "$2"  # (a new file: a wheelhouse from the cache shares its files with the cache)
  "$PY" - "$@" <<'PYEOF'
import sys, tomllib
pyproject, out, *extras = sys.argv[1:]
project = tomllib.load(open(pyproject, "rb"))["project"]
reqs = list(project["dependencies"])
for extra in extras:
    reqs += project["optional-dependencies"][extra]
open(out, "w").write("\n".join(reqs) + "\n")
PYEOF
}
project_wheels() {  # the eyeops wheels are rebuilt every time: they are this checkout
  rm -rf "$WHEELS/project" && mkdir -p "$WHEELS/project"
  rm -f "$WHEELS"/main/eyeops-*.whl "$WHEELS"/detectors/eyeops_detectors-*.whl  # (where earlier builds put them)
  "$PIP" wheel -q --no-deps --no-build-isolation -w "$WHEELS/project" . >/dev/null
  "$PIP" wheel -q --no-deps --no-build-isolation -w "$WHEELS/project" ./detectors >/dev/null
  rm -rf build/lib build/bdist.* detectors/build
}
# torch needs setuptools at run time; the locks leave it out (pip freeze does), so take the tests' one
SETUPTOOLS="setuptools==$("$PY" -c 'import setuptools; print(setuptools.__version__)')"
# redis asks for async-timeout under Python < 3.11.3 (Debian bookworm's is 3.11.2; the lock was made on 3.11.7)
wheelhouse main images/constraints-main.txt torch==2.13.0 "$SETUPTOOLS" async-timeout==5.0.1
wheelhouse triton images/constraints-triton.txt torch==2.13.0 "$SETUPTOOLS" "nvidia-pytriton==$TRITON_WHEEL_VERSION"
wheelhouse detectors images/constraints-detectors.txt
requires pyproject.toml "$WHEELS/main/requires-server.txt" server
requires pyproject.toml "$WHEELS/main/requires-gateway.txt"
requires detectors/pyproject.toml "$WHEELS/detectors/requires-pipelines.txt" pipelines
project_wheels

# -- 4. images, 5. SBOMs -------------------------------------------------------------------------
summary="$OUT/images.jsonl"
: > "$summary.new"
for name in $WANT; do
  case $name in
    triton) file=inference/triton/Dockerfile; target="" ;;
    detectors) file=detectors/Dockerfile; target="" ;;
    *) file=Dockerfile; target="--target $name" ;;
  esac
  tag="eyeops/$name:$VERSION"
  log "building $tag"
  t0=$(date +%s)
  # shellcheck disable=SC2086
  $DOCKER build -q -f "$file" $target --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "PYTHON_HOME=$PYTHON_HOME" -t "$tag" . >"$OUT/build-$name.log" 2>&1 \
    || { tail -30 "$OUT/build-$name.log" >&2; echo "[images] build of $tag failed; see $OUT/build-$name.log" >&2; exit 1; }
  seconds=$(( $(date +%s) - t0 ))
  case $name in triton) python=/opt/model-env/bin/python ;; *) python=/opt/venv/bin/python ;; esac
  $DOCKER run --rm --network none --read-only --user 10001:10001 --cap-drop ALL \
    -v "$ROOT/images/sbom.py:/sbom.py:ro" --entrypoint "$python" "$tag" /sbom.py "$tag" \
    >"$OUT/sbom/$name.cdx.json"
  size=$($DOCKER image inspect -f '{{.Size}}' "$tag")
  id=$($DOCKER image inspect -f '{{.Id}}' "$tag")
  printf '{"image": "%s", "id": "%s", "size_bytes": %s, "build_seconds": %s, "base": "%s"}\n' \
    "$tag" "$id" "$size" "$seconds" "$BASE_IMAGE" >> "$summary.new"
  log "$tag: $((size / 1000000)) MB, built in ${seconds} s, SBOM $OUT/sbom/$name.cdx.json"
done
"$PY" - "$summary.new" "$OUT/images.json" <<'PYEOF'
import json, pathlib, sys
rows = [json.loads(line) for line in pathlib.Path(sys.argv[1]).read_text().splitlines() if line]
out = pathlib.Path(sys.argv[2])
old = {r["image"]: r for r in (json.loads(out.read_text()) if out.exists() else [])}
old.update({r["image"]: r for r in rows})
out.write_text(json.dumps(sorted(old.values(), key=lambda r: r["image"]), indent=1) + "\n")
PYEOF
rm -f "$summary.new"
log "done: $OUT/images.json"
