# syntax=docker/dockerfile:1
# paperbot in a container. Two targets:
#   docker build --target cuda -t paperbot:cuda .   NVIDIA GPU (llama.cpp built with CUDA; run with --gpus all)
#   docker build --target cpu  -t paperbot:cpu  .   any x86-64/arm64 machine
# The data directory (database, uploads, models) is the volume /data. compose.yaml runs either.
# The image is AGPL-3.0-or-later as a whole (it contains PyMuPDF); see README "Licences".

ARG CUDA_VERSION=12.6.3
ARG UBUNTU=ubuntu24.04
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- CPU: build ------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu-build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# No AMX kernels: they crash on Q4_K models on Xeons that report AMX (scripts/bootstrap.sh says more).
ARG CMAKE_ARGS="-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'"
ARG TORCH_SPEC="torch==2.13.0+cpu"
ARG EXTRAS=discord,slack,web
RUN CMAKE_ARGS="${CMAKE_ARGS}" TORCH_SPEC="${TORCH_SPEC}" docker/install.sh /opt/venv "${EXTRAS}"

# --- CPU: run --------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group paperbot \
    && mkdir /data && chown paperbot:paperbot /data
COPY --from=cpu-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PAPERBOT_DATA_DIR=/data \
    HF_HOME=/data/huggingface \
    PAPERBOT_WEB_HOST=0.0.0.0 \
    PAPERBOT_HEALTH_HOST=127.0.0.1 \
    PAPERBOT_HEALTH_PORT=8321
VOLUME ["/data"]
USER 10001:10001
WORKDIR /home/paperbot
EXPOSE 7860 3000
# Asks the running bot (its /healthz), not just whether the process exists. The first start downloads the models.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 CMD ["python", "-m", "bot.health"]
ENTRYPOINT ["paperbot"]
CMD ["run"]

# --- CUDA: build -----------------------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS cuda-build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# No GPU while building: name the architectures (Turing … Hopper), and let the linker leave libcuda to run time.
ARG CUDA_ARCHITECTURES="75;80;86;89;90"
ARG CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES} -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--allow-shlib-undefined"
ARG TORCH_SPEC="torch==2.13.0"
ARG EXTRAS=discord,slack,web
RUN CMAKE_ARGS="${CMAKE_ARGS}" TORCH_SPEC="${TORCH_SPEC}" docker/install.sh /opt/venv "${EXTRAS}"

# --- CUDA: run -------------------------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS cuda
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group paperbot \
    && mkdir /data && chown paperbot:paperbot /data
COPY --from=cuda-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PAPERBOT_DATA_DIR=/data \
    HF_HOME=/data/huggingface \
    PAPERBOT_WEB_HOST=0.0.0.0 \
    PAPERBOT_HEALTH_HOST=127.0.0.1 \
    PAPERBOT_HEALTH_PORT=8321 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
VOLUME ["/data"]
USER 10001:10001
WORKDIR /home/paperbot
EXPOSE 7860 3000
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 CMD ["python", "-m", "bot.health"]
ENTRYPOINT ["paperbot"]
CMD ["run"]
