# syntax=docker/dockerfile:1.7
# Images of the main environment, one target each; build context: the repository root.
#   docker build --target ocr-transformer --build-arg TORCH_INDEX_URL=<PyTorch CPU wheel index> -t eyeops/ocr-transformer:0.1.0 .
#   docker build --target lens            ... -t eyeops/lens:0.1.0 .
#   docker build --target pipelines       ... -t eyeops/pipelines:0.1.0 .
# They run the same entrypoints and flags `eyeops up` runs (the chart passes them).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL
RUN test -n "$TORCH_INDEX_URL" || (echo "--build-arg TORCH_INDEX_URL=<the PyTorch CPU wheel index> is required" && false)
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, CPU build, exactly this version (the rest must not resolve another one)
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY eyeops ./eyeops
COPY inference ./inference
COPY kfp_pipelines ./kfp_pipelines
COPY images/constraints-main.txt /tmp/constraints.txt
# every dependency at the version the tests ran with; the server extra holds all but the gateway's
RUN pip install -c /tmp/constraints.txt ".[server]" \
 && pip install --no-deps -c /tmp/constraints.txt rapidocr-onnxruntime

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 10001 eyeops && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin eyeops \
 && apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libgomp1 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
WORKDIR /app

# What the services share: the Feast repository with the cluster profile (the chart mounts its own
# feature_store.yaml over it), a non-root user.
FROM runtime AS app
COPY eyeops/lens/feature_repo /app/feature_repo
RUN cp /app/feature_repo/feature_store.cluster.yaml /app/feature_repo/feature_store.yaml
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
