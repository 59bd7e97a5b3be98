"""What a client sends as content: input audio bytes and conversation items.

Pure functions (no I/O): they turn the SDK's models into samples and
:class:`~pipelines.realtime.conversation.Item` objects, or raise
:class:`~pipelines.realtime.protocol.ProtocolError` naming the offending field.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from pipelines.realtime.conversation import Item
from pipelines.realtime.protocol import ProtocolError
from voice.audio.g711 import alaw_decode, ulaw_decode

_CONTAINER_MAGIC = (b"RIFF", b"OggS", b"fLaC", b"ID3", b"\x1aE\xdf\xa3", b"\xff\xfb", b"\xff\xf3")


def decode_audio(data: bytes, fmt: str, rate: int, param: str = "audio") -> np.ndarray:
    """Raw audio of the session's input format ``fmt`` (at ``rate`` Hz) as int16 samples."""
    if data.startswith(_CONTAINER_MAGIC):
        raise ProtocolError(
            f"audio looks like an encoded file; this session expects raw {fmt} "
            f"at {rate} Hz (set it with session.update)",
            code="invalid_audio_format",
            param=param,
        )
    if fmt == "audio/pcmu":
        return ulaw_decode(data)
    if fmt == "audio/pcma":
        return alaw_decode(data)
    if len(data) % 2:
        raise ProtocolError(
            "audio/pcm must be 16-bit samples: an odd number of bytes was sent",
            code="invalid_audio_format",
            param=param,
        )
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def client_audio(data: Any, param: str, fmt: str, rate: int) -> np.ndarray | None:
    """The ``input_audio`` of a client item (base64 in format ``fmt``) as int16 samples
    at ``rate`` Hz; None when it carries none (or only transcripts)."""
    chunks = []
    for index, part in enumerate(getattr(data, "content", None) or []):
        if part.type == "input_audio" and part.audio and not part.transcript:
            where = f"{param}.content[{index}].audio"
            try:
                raw = base64.b64decode(part.audio, validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError("audio is not valid base64", param=where) from None
            chunks.append(decode_audio(raw, fmt, rate, where))
    if not chunks:
        return None
    audio = np.concatenate(chunks)
    if len(audio) < rate // 10:
        raise ProtocolError(
            "input audio must be at least 100 ms long",
            code="invalid_audio_format",
            param=f"{param}.content",
        )
    return audio


def item_from_client(data: Any, item_id: str, param: str) -> Item:
    """The SDK's ``ConversationItem`` ``data`` as an item with id ``item_id``: messages
    (text, and audio parts' transcripts), function calls and their outputs."""
    if data.type == "function_call_output":
        return Item(id=item_id, type="function_call_output", call_id=data.call_id, output=data.output)
    if data.type == "function_call":
        return Item(
            id=item_id,
            type="function_call",
            call_id=data.call_id or item_id,
            name=data.name,
            arguments=data.arguments,
        )
    if data.type != "message":
        raise ProtocolError(f"item type {data.type!r} is not supported", param=f"{param}.type")
    texts = []
    for part in data.content or []:
        if part.type in ("input_text", "output_text", "text", None) and part.text:
            texts.append(part.text)
        elif part.type in ("input_audio", "output_audio") and (part.transcript or part.text):
            texts.append(part.transcript or part.text or "")
        elif part.type == "input_image":
            raise ProtocolError("image input is not supported", param=f"{param}.content")
    return Item(id=item_id, type="message", role=data.role, text=" ".join(texts))
