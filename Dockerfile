# Images of the main environment, one target each; build context: the repository root.
# Dependencies come from a wheelhouse made on the host from the lock (no network inside a build):
#     bash scripts/images.sh            # the wheelhouse, every image, an SBOM per image
# or by hand, once build/wheelhouse/main holds the lock's wheels and the eyeops wheel:
#     docker build --target ocr-transformer --build-arg BASE_IMAGE=<python 3.11 image> -t eyeops/ocr-transformer:0.1.0 .
# Targets: ocr-transformer, lens, console, pipelines, gateway. They run the same entrypoints and
# flags `eyeops up` runs (the chart passes them), as uid 10001 with a read-only root: HOME, every
# cache and eyeops' default data folder point at /tmp, which the chart mounts as an emptyDir; what
# must outlive a pod goes to the volumes the chart mounts (results database, models PVC).
# BASE_IMAGE: the official python:3.11.7-slim-bookworm by default; pin it by the digest your
# registry shows (…@sha256:…). scripts/images.sh builds a Debian base with debootstrap instead.
ARG BASE_IMAGE=python:3.11.7-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
COPY build/wheelhouse/main /wheels
# every dependency at the version the tests ran with: the core's and the server extra's (requires-*.txt,
# written by scripts/images.sh from pyproject.toml); the PP-OCRv4 model file comes without rapidocr's
# own dependencies (opencv-python beside headless). The eyeops package itself is not in this layer:
# it changes with every commit, its dependencies only with a lock, so a rebuild reuses this one.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c /wheels/constraints.txt torch==2.13.0 -r /wheels/requires-server.txt \
 && /opt/venv/bin/pip install --no-deps -c /wheels/constraints.txt rapidocr-onnxruntime \
 && /opt/venv/bin/pip uninstall -y pip

# The gateway alone: the core package's dependencies, no model servers (`pip install 'eyeops[gateway]'`).
FROM ${BASE_IMAGE} AS gateway-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
COPY build/wheelhouse/main /wheels
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c /wheels/constraints.txt -r /wheels/requires-gateway.txt \
 && /opt/venv/bin/pip uninstall -y pip

# The eyeops wheel (this checkout), unpacked into /opt/app without dependencies: the last layers of
# every image, on PYTHONPATH, its console script on PATH.
FROM ${BASE_IMAGE} AS app-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1
COPY build/wheelhouse/project/eyeops-*.whl /project/
RUN python -m venv /opt/installer \
 && /opt/installer/bin/pip install --no-deps --no-compile --target /opt/app /project/eyeops-*.whl \
 && sed -i '1s|^#!.*|#!/opt/venv/bin/python|' /opt/app/bin/*

FROM ${BASE_IMAGE} AS base
RUN (getent group 10001 || groupadd --gid 10001 eyeops) \
 && (getent passwd 10001 || useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin eyeops)
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib HF_HOME=/tmp/.cache/huggingface EYEOPS_DATA_DIR=/tmp/eyeops
WORKDIR /app

FROM base AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
COPY --from=app-build /opt/app /opt/app
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH PYTHONPATH=/opt/app

# What the services share: the Feast repository with the cluster profile (the chart mounts its own
# feature_store.yaml over it), a non-root user.
FROM runtime AS app
RUN cp -r "$(python -c 'import eyeops.features, pathlib; print(pathlib.Path(eyeops.features.__file__).parent / "feature_repo")')" /app/feature_repo \
 && cp /app/feature_repo/feature_store.cluster.yaml /app/feature_repo/feature_store.yaml
USER 10001
EXPOSE 8080

FROM app AS ocr-transformer
ENTRYPOINT ["python", "-m", "inference.ocr_transformer"]

FROM app AS lens
# The lens transformer runs this entrypoint; the lens ServingRuntime runs inference.lens_predictor.
ENTRYPOINT ["python", "-m", "inference.lens_transformer"]

FROM app AS console
# The review console (web): `eyeops console serve`, behind the ingress's OIDC proxy on a cluster.
ENTRYPOINT ["python", "-m", "eyeops", "console", "serve"]

FROM app AS pipelines
USER 0
RUN apt-get update && apt-get install -y --no-install-recommends tesseract-ocr fonts-dejavu-core fonts-liberation \
 && rm -rf /var/lib/apt/lists/*
USER 10001
ENTRYPOINT ["python"]

FROM base AS gateway
COPY --from=gateway-build /opt/venv /opt/venv
COPY --from=app-build /opt/app /opt/app
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH PYTHONPATH=/opt/app
USER 10001
ENTRYPOINT ["python", "-m", "eyeops", "gateway"]
CMD ["watch", "--help"]
