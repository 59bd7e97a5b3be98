"""Per-session configuration: defaults from settings, changed by ``session.update``.

Pure data and functions; the session applies updates and reports the result in
``session.created`` / ``session.updated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from openai.types.realtime import (
    RealtimeSessionCreateRequest,
    RealtimeTranscriptionSessionCreateRequest,
)
from pydantic import ValidationError

from pipelines.realtime.extensions import parse_extensions
from pipelines.realtime.protocol import ProtocolError

AudioFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]

FORMAT_RATES: dict[str, int] = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}
"""Sample rate (Hz) each protocol audio format is carried at."""


Eagerness = Literal["low", "medium", "high", "auto"]


@dataclass(frozen=True)
class TurnDetection:
    """Turn detection (the protocol's ``server_vad`` or ``semantic_vad``); times in ms.

    ``server_vad`` ends a turn after ``silence_duration_ms`` of silence; with
    ``adaptive`` (a server setting, not in the protocol) that wait is shortened
    after a finished sentence and lengthened mid-clause. ``semantic_vad`` ends it
    when the turn model and the transcript say the user has finished, waiting
    longer or shorter according to ``eagerness``. ``threshold`` and
    ``prefix_padding_ms`` apply to both (the VAD that finds speech).
    """

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    eagerness: Eagerness = "auto"
    adaptive: bool = True
    idle_timeout_ms: int | None = None
    """``server_vad``: after this much input audio (ms) with neither speech nor a
    response, the input is committed and a response created (``timeout_triggered``)."""

    def to_protocol(self) -> dict[str, Any]:
        if self.type == "semantic_vad":
            return {
                "type": "semantic_vad",
                "eagerness": self.eagerness,
                "create_response": self.create_response,
                "interrupt_response": self.interrupt_response,
            }
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
            "idle_timeout_ms": self.idle_timeout_ms,
        }


@dataclass(frozen=True)
class SpeakerConfig:
    """Live speaker attribution (extension ``session.speakers``).

    ``focus``: None (everyone is a user), ``"first"`` (the first speaker heard)
    or a speaker's name: other voices are transcribed and labelled but neither
    start responses nor interrupt the agent. ``known`` lists enrolled names; each
    ``session.update`` may add speakers (a sample per update keeps events small).
    """

    enabled: bool = True
    threshold: float = 0.55
    focus: str | None = None
    known: tuple[str, ...] = ()

    def to_protocol(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "threshold": self.threshold,
            "focus": self.focus,
            "known_speaker_names": list(self.known),
        }


@dataclass(frozen=True)
class MeetingConfig:
    """Live meeting recording (extension ``session.meeting``): when ``record`` is on,
    the session's input audio is kept and stored as a meeting job when it ends."""

    record: bool = False
    title: str | None = None

    def to_protocol(self) -> dict[str, Any]:
        return {"record": self.record, "title": self.title}


@dataclass(frozen=True)
class SessionConfig:
    """What a realtime session does; every field has a protocol counterpart."""

    instructions: str
    type: Literal["realtime", "transcription"] = "realtime"
    """``transcription``: input is transcribed, no response is ever created."""
    model: str = "voice-agent"
    voice: str = "joe"
    speed: float = 1.0
    input_format: AudioFormat = "audio/pcm"
    output_format: AudioFormat = "audio/pcm"
    output_modalities: tuple[str, ...] = ("audio",)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    transcription_language: str | None = "en"
    transcription_prompt: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    """Client-side function tools declared by the client (protocol shape)."""
    tool_choice: str | dict[str, Any] = "auto"
    temperature: float | None = None
    max_output_tokens: int | None = None
    speakers: SpeakerConfig = field(default_factory=SpeakerConfig)
    meeting: MeetingConfig = field(default_factory=MeetingConfig)
    extensions: frozenset[str] = frozenset()
    """Opt-in protocol extensions (``session.voice_extensions``); none by default."""

    @property
    def input_rate(self) -> int:
        return FORMAT_RATES[self.input_format]

    @property
    def output_rate(self) -> int:
        return FORMAT_RATES[self.output_format]

    def to_protocol(self, session_id: str, server_tools: list[dict[str, Any]]) -> dict[str, Any]:
        """The ``session`` object of ``session.created`` / ``session.updated``."""
        audio_input = {
            "format": _format_protocol(self.input_format),
            "transcription": {
                "model": "whisper",
                "language": self.transcription_language,
                "prompt": self.transcription_prompt,
            },
            "noise_reduction": None,
            "turn_detection": self.turn_detection.to_protocol() if self.turn_detection else None,
        }
        if self.type == "transcription":
            return {
                "type": "transcription",
                "object": "realtime.transcription_session",
                "id": session_id,
                "audio": {"input": audio_input},
                "include": None,
                **self._extension_fields(),
            }
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": self.model,
            "output_modalities": list(self.output_modalities),
            "instructions": self.instructions,
            "audio": {
                "input": audio_input,
                "output": {
                    "format": _format_protocol(self.output_format),
                    "voice": self.voice,
                    "speed": self.speed,
                },
            },
            "tools": [*server_tools, *self.tools],
            "tool_choice": self.tool_choice,
            "max_output_tokens": self.max_output_tokens
            if self.max_output_tokens is not None
            else "inf",
            **self._extension_fields(),
        }

    def _extension_fields(self) -> dict[str, Any]:
        """Extension settings; the client's view drops them unless it uses extensions."""
        return {
            "temperature": self.temperature,
            "speakers": self.speakers.to_protocol(),
            "meeting": self.meeting.to_protocol(),
            "voice_extensions": sorted(self.extensions),
        }


SessionRequest = RealtimeSessionCreateRequest | RealtimeTranscriptionSessionCreateRequest
"""A session config as the SDK's models read it (``session.type`` picks the model)."""


def session_request(data: Any) -> SessionRequest:
    """A session config sent outside ``session.update`` (a WebRTC offer's ``session`` part,
    a client secret request), validated as the SDK's create request of its ``type``
    (``realtime``, the default, or ``transcription``). Raises :class:`ProtocolError`
    naming the first invalid field."""
    if not isinstance(data, dict):
        raise ProtocolError("the session must be a JSON object", param="session")
    data = {"type": "realtime", **data}
    model = (
        RealtimeTranscriptionSessionCreateRequest
        if data["type"] == "transcription"
        else RealtimeSessionCreateRequest
    )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProtocolError(f"session.{where}: {first['msg']}", param=f"session.{where}") from None


def _format_protocol(fmt: str) -> dict[str, Any]:
    return {"type": fmt, "rate": FORMAT_RATES[fmt]} if fmt == "audio/pcm" else {"type": fmt}


def apply_session_update(
    config: SessionConfig, session: RealtimeSessionCreateRequest | Any
) -> SessionConfig:
    """Return ``config`` with the fields present in a ``session.update`` applied.

    Raises :class:`ProtocolError` naming the field for values the server cannot honour.
    """
    changes: dict[str, Any] = {"type": getattr(session, "type", "realtime")}
    set_fields = session.model_fields_set
    if "include" in set_fields and session.include:
        raise ProtocolError(
            "include (transcription logprobs) is not available in realtime sessions",
            param="session.include",
        )
    if "instructions" in set_fields and session.instructions is not None:
        changes["instructions"] = session.instructions
    if "output_modalities" in set_fields and session.output_modalities:
        changes["output_modalities"] = tuple(session.output_modalities)
    if "tool_choice" in set_fields and session.tool_choice is not None:
        changes["tool_choice"] = _tool_choice(session.tool_choice, "session.tool_choice")
    if "tools" in set_fields and session.tools is not None:
        changes["tools"] = tuple(
            _client_tool(t, f"session.tools[{i}]") for i, t in enumerate(session.tools)
        )
    if "max_output_tokens" in set_fields:
        mot = session.max_output_tokens
        changes["max_output_tokens"] = None if mot in (None, "inf") else int(mot)
    extra = session.model_extra or {}
    if "voice_extensions" in extra:
        try:
            changes["extensions"] = parse_extensions(extra["voice_extensions"])
        except ValueError as exc:
            raise ProtocolError(str(exc), param="session.voice_extensions") from None
    if "temperature" in extra:
        temp = extra["temperature"]
        if not isinstance(temp, int | float) or not 0.0 <= temp <= 2.0:
            raise ProtocolError(
                "temperature must be a number in [0, 2]", param="session.temperature"
            )
        changes["temperature"] = float(temp)
    if "speakers" in extra:
        changes["speakers"] = _speakers(config.speakers, extra["speakers"])
    if "meeting" in extra:
        changes["meeting"] = _meeting(config.meeting, extra["meeting"])
    if session.audio is not None:
        changes.update(_audio_changes(config, session.audio))
    return replace(config, **changes)


def response_config(config: SessionConfig, params: Any) -> SessionConfig:
    """The config of one response: the session's, with what ``response.create``'s
    ``response`` (the SDK's ``RealtimeResponseCreateParams``) sets for it alone:
    modalities, token budget, tools, tool choice and output voice/format.
    Raises :class:`ProtocolError` naming the field for values the server cannot honour."""
    if params is None:
        return config
    changes: dict[str, Any] = {}
    if params.output_modalities:
        changes["output_modalities"] = tuple(params.output_modalities)
    if params.max_output_tokens is not None:
        mot = params.max_output_tokens
        changes["max_output_tokens"] = None if mot == "inf" else int(mot)
    if params.tools is not None:
        changes["tools"] = tuple(
            _client_tool(t, f"response.tools[{i}]") for i, t in enumerate(params.tools)
        )
    if params.tool_choice is not None:
        changes["tool_choice"] = _tool_choice(params.tool_choice, "response.tool_choice")
    output = params.audio.output if params.audio is not None else None
    if output is not None:
        if output.format is not None and output.format.type is not None:
            changes["output_format"] = output.format.type
        if output.voice is not None:
            changes["voice"] = output.voice if isinstance(output.voice, str) else output.voice.id
    return replace(config, **changes)


def _tool_choice(choice: Any, param: str) -> str | dict[str, Any]:
    """A tool choice in the protocol's shape: ``auto``/``none``/``required`` or
    ``{"type": "function", "name": ...}``; MCP choices are refused."""
    if isinstance(choice, str):
        return choice
    data = choice.model_dump(exclude_none=True) if hasattr(choice, "model_dump") else dict(choice)
    if data.get("type") != "function" or not data.get("name"):
        raise ProtocolError(
            "tool_choice must be auto, none, required or a function "
            '({"type": "function", "name": ...}); MCP tools are not supported',
            param=param,
        )
    return {"type": "function", "name": data["name"]}


def chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """A protocol tool choice in the shape Chat Completions takes."""
    if isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice["name"]}}


def check_tool_choice(config: SessionConfig, server_tools: set[str], param: str) -> None:
    """Raise :class:`ProtocolError` when ``config`` names a function it does not have."""
    choice = config.tool_choice
    if isinstance(choice, dict):
        names = server_tools | {t["name"] for t in config.tools}
        if choice["name"] not in names:
            raise ProtocolError(
                f"tool_choice names the function {choice['name']!r}, which is not among the "
                f"tools ({', '.join(sorted(names)) or 'none'})",
                param=param,
            )


def _client_tool(tool: Any, param: str) -> dict[str, Any]:
    data = tool.model_dump(exclude_none=True) if hasattr(tool, "model_dump") else dict(tool)
    if data.get("type", "function") != "function" or not data.get("name"):
        raise ProtocolError("only function tools with a name are supported", param=param)
    data.setdefault("type", "function")
    data.setdefault("parameters", {"type": "object", "properties": {}})
    return data


def _audio_changes(config: SessionConfig, audio: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if audio.input is not None:
        inp = audio.input
        if inp.noise_reduction is not None:
            raise ProtocolError(
                "noise reduction is not available on this server (no denoiser fits its "
                "latency budget); send null or leave it out",
                param="session.audio.input.noise_reduction",
            )
        if inp.format is not None and inp.format.type is not None:
            changes["input_format"] = inp.format.type
        if "turn_detection" in inp.model_fields_set:
            changes["turn_detection"] = _turn_detection(config.turn_detection, inp.turn_detection)
        if inp.transcription is not None:
            if inp.transcription.language is not None:
                changes["transcription_language"] = inp.transcription.language
            if inp.transcription.prompt is not None:
                changes["transcription_prompt"] = inp.transcription.prompt
    out = getattr(audio, "output", None)  # transcription sessions have no output
    if out is not None:
        if out.format is not None and out.format.type is not None:
            changes["output_format"] = out.format.type
        if out.voice is not None:
            changes["voice"] = out.voice if isinstance(out.voice, str) else out.voice.id
        if out.speed is not None:
            if not 0.25 <= out.speed <= 4.0:
                raise ProtocolError(
                    "speed must be in [0.25, 4.0]", param="session.audio.output.speed"
                )
            changes["speed"] = float(out.speed)
    return changes


def _turn_detection(current: TurnDetection | None, td: Any) -> TurnDetection | None:
    if td is None:
        return None
    base = current or TurnDetection()
    if td.type == "semantic_vad":
        eagerness: Eagerness = getattr(td, "eagerness", None) or "auto"
        if eagerness not in ("low", "medium", "high", "auto"):
            raise ProtocolError(
                "eagerness must be low, medium, high or auto",
                param="session.audio.input.turn_detection.eagerness",
            )
        return replace(
            base,
            type="semantic_vad",
            eagerness=eagerness,
            idle_timeout_ms=None,
            create_response=td.create_response if td.create_response is not None else True,
            interrupt_response=td.interrupt_response if td.interrupt_response is not None else True,
        )
    values: dict[str, Any] = {"type": "server_vad"}
    for name in (
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "create_response",
        "interrupt_response",
        "idle_timeout_ms",
    ):
        value = getattr(td, name, None)
        if value is not None:
            values[name] = value
    if "idle_timeout_ms" in values and not 1000 <= values["idle_timeout_ms"] <= 120000:
        raise ProtocolError(
            "idle_timeout_ms must be in [1000, 120000]",
            param="session.audio.input.turn_detection.idle_timeout_ms",
        )
    if "threshold" in values and not 0.0 <= values["threshold"] <= 1.0:
        raise ProtocolError(
            "threshold must be in [0, 1]", param="session.audio.input.turn_detection.threshold"
        )
    if "silence_duration_ms" in values and not 50 <= values["silence_duration_ms"] <= 10000:
        raise ProtocolError(
            "silence_duration_ms must be in [50, 10000]",
            param="session.audio.input.turn_detection.silence_duration_ms",
        )
    return replace(base, **values)


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{param} must be an object", param=param)
    return value


def _speakers(current: SpeakerConfig, value: Any) -> SpeakerConfig:
    """Apply ``session.speakers``; reference audio is enrolled by the session itself."""
    data = _object(value, "session.speakers")
    changes: dict[str, Any] = {}
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise ProtocolError("enabled must be a boolean", param="session.speakers.enabled")
        changes["enabled"] = data["enabled"]
    if "threshold" in data:
        t = data["threshold"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not -1.0 <= t <= 1.0:
            raise ProtocolError(
                "threshold must be a cosine similarity in [-1, 1]",
                param="session.speakers.threshold",
            )
        changes["threshold"] = float(t)
    if "focus" in data:
        focus = data["focus"]
        if focus is not None and (not isinstance(focus, str) or not focus.strip()):
            raise ProtocolError(
                "focus must be null, 'first' or a speaker's name", param="session.speakers.focus"
            )
        changes["focus"] = focus.strip() if focus else None
    names, refs = data.get("known_speaker_names"), data.get("known_speaker_references")
    if names is not None or refs is not None:
        names, refs = names or [], refs or []
        if (
            not isinstance(names, list)
            or not isinstance(refs, list)
            or len(names) != len(refs)
            or not all(isinstance(n, str) and n.strip() for n in names)
        ):
            raise ProtocolError(
                "known_speaker_names and known_speaker_references must be lists of equal "
                "length: non-empty names and audio (data URLs or base64)",
                param="session.speakers.known_speaker_names",
            )
        if len({n.strip() for n in names}) != len(names):
            raise ProtocolError(
                "known speaker names must be unique", param="session.speakers.known_speaker_names"
            )
        changes["known"] = tuple(dict.fromkeys([*current.known, *(n.strip() for n in names)]))
    return replace(current, **changes)


def _meeting(current: MeetingConfig, value: Any) -> MeetingConfig:
    data = _object(value, "session.meeting")
    changes: dict[str, Any] = {}
    if "record" in data:
        if not isinstance(data["record"], bool):
            raise ProtocolError("record must be a boolean", param="session.meeting.record")
        changes["record"] = data["record"]
    if "title" in data:
        title = data["title"]
        if title is not None and (not isinstance(title, str) or len(title) > 200):
            raise ProtocolError(
                "title must be a string of at most 200 characters", param="session.meeting.title"
            )
        changes["title"] = title
    return replace(current, **changes)
