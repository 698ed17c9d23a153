# syntax=docker/dockerfile:1
# One image for every tradeloop component: the predictor (`tradeloop serve`), the monitor, ingest,
# `tradeloop retrain` (the training RayJob's entrypoint; the image is also the Ray head/worker
# image), the Feast jobs (`tradeloop features apply|materialize`) and `mlflow server`.
#
#   docker build -t tradeloop:dev .                                  # CPU (default)
#   docker build --build-arg TORCH_VARIANT=cu128 -t tradeloop:dev-cuda .   # CUDA torch + xgboost
#
# Dependencies come from requirements.lock only. torch is installed first from the PyTorch index
# of the chosen variant (2.13.0+cpu satisfies the lock's torch==2.13.0); the CUDA variant swaps
# xgboost-cpu for the same version of xgboost, which carries the CUDA kernels.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment with the pinned stack and tradeloop installed (not editable) ----
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
# Every version comes from requirements.lock, through the two variables hadolint cannot read.
# hadolint ignore=DL3013
RUN torch_pin="$(grep -E '^torch==' requirements.lock)" \
 && pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "${torch_pin}" \
 && if [ "${TORCH_VARIANT}" = cpu ]; then \
      pip install -r requirements.lock; \
    else \
      xgb="$(grep -E '^xgboost-cpu==' requirements.lock | sed 's/^xgboost-cpu/xgboost/')"; \
      grep -vE '^xgboost-cpu==' requirements.lock > /tmp/requirements.cuda.lock; \
      pip install -r /tmp/requirements.cuda.lock "${xgb}"; \
    fi
COPY pyproject.toml README.md ./
COPY tradeloop ./tradeloop
COPY training ./training
COPY services ./services
RUN pip install --no-deps --no-build-isolation . \
 && python -c "import tradeloop, training, services"

# -- runtime: the environment, the Feast repository, a non-root user; nothing else ---------------
FROM ${PYTHON_IMAGE} AS runtime
# wget: KubeRay's default probes on Ray pods call it; libgomp1: OpenMP for xgboost. Debian's
# security updates move these versions, so they are not pinned (the base image tag is).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 tradeloop \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/tradeloop --shell /bin/bash tradeloop \
 && install -d -o 10001 -g 10001 /var/lib/tradeloop
COPY --from=build /opt/venv /opt/venv
COPY feature_repo /app/feature_repo
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRADELOOP_HOME=/var/lib/tradeloop \
    TRADELOOP_FEATURE_REPO=/app/feature_repo \
    RAY_USAGE_STATS_ENABLED=0
WORKDIR /app
USER 10001:10001
EXPOSE 8080 8081 9090 5000
# One image, many components: each has its own probes in the chart, so none is baked in here.
HEALTHCHECK NONE
ENTRYPOINT ["tradeloop"]
CMD ["--help"]
