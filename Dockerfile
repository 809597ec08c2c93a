# syntax=docker/dockerfile:1
# The Lookbook image: the service (`lookbook serve`) and the trainer (`lookbook train`) in one
# image, CPU-only. Built in two stages: `build` installs the project into a virtual environment
# with scripts/install.sh (the same script `make install` and CI run; torch from the CPU index),
# `runtime` copies that environment onto a slim Python 3.11 and runs it as a non-root user.
# Checked with hadolint in `make check` (scripts/check_deploy.py); see README, "Run it in production".

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# torch first, in a layer of its own that only a new pin in pyproject.toml rebuilds
COPY pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
RUN bash scripts/install.sh --venv /opt/lookbook --torch-index-url "${TORCH_INDEX_URL}" --torch-only
COPY app app
COPY feature_store feature_store
COPY models models
COPY training training
RUN bash scripts/install.sh --venv /opt/lookbook --torch-index-url "${TORCH_INDEX_URL}" --no-editable

FROM ${PYTHON_IMAGE} AS runtime
# libgomp1: the OpenMP runtime LightGBM's wheel links against (faiss and torch ship their own)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 lookbook \
    && useradd --system --uid 10001 --gid lookbook --home-dir /var/lib/lookbook \
       --no-create-home --shell /usr/sbin/nologin lookbook \
    && mkdir -p /var/lib/lookbook/bundles /var/lib/lookbook/events /var/lib/lookbook/data \
    && chown -R lookbook:lookbook /var/lib/lookbook
COPY --from=build /opt/lookbook /opt/lookbook
ENV PATH=/opt/lookbook/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENBLAS_NUM_THREADS=1 \
    LOOKBOOK_BUNDLE_DIR=/var/lib/lookbook/bundles \
    LOOKBOOK_EVENT_LOG_DIR=/var/lib/lookbook/events \
    LOOKBOOK_DATA_DIR=/var/lib/lookbook/data
WORKDIR /var/lib/lookbook
# bundles: shared with the trainer (it publishes, replicas read); events: the durable event log
VOLUME ["/var/lib/lookbook/bundles", "/var/lib/lookbook/events"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["lookbook"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
