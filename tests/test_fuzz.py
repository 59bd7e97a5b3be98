"""Property-based fuzzing of the two parsers that take untrusted input.

* The Realtime event parser accepts a client message or raises
  :class:`ProtocolError`, whatever the bytes: never another exception.
* The upload decoder returns float32 audio or raises :class:`AudioDecodeError` for
  arbitrary, truncated and corrupted files (real recordings in several codecs,
  damaged at random), and every call ends within a time bound.
"""

from __future__ import annotations

import contextlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from pipelines.realtime.protocol import CLIENT_EVENTS, ProtocolError, parse_client_event
from tests.conftest import data_path
from voice.audio.decode import AudioDecodeError, decode_audio, probe

MAX_BYTES = 64 * 1024
DECODE_LIMIT_S = 20.0
"""No single decode of these small inputs may take longer (a hang fails the test)."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
events = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(CLIENT_EVENTS)) | st.text(max_size=30)},
    optional={
        "event_id": st.text(max_size=10) | st.integers(),
        "audio": st.text(max_size=40) | st.binary(max_size=30).map(lambda b: b.hex()),
        "session": st.dictionaries(
            st.sampled_from(["type", "instructions", "audio", "tools", "output_modalities",
                             "max_output_tokens", "tool_choice", "temperature"]),
            json_values, max_size=5),
        "item": st.dictionaries(
            st.sampled_from(["type", "role", "content", "id", "call_id", "output", "name"]),
            json_values, max_size=5),
        "item_id": json_values,
        "response": st.dictionaries(st.text(max_size=12), json_values, max_size=4),
        "content_index": json_values,
        "audio_end_ms": json_values,
    },
).flatmap(lambda base: st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(
    lambda extra: {**extra, **base}))


def _parse(raw: str | bytes) -> None:
    try:
        parsed = parse_client_event(raw, max_bytes=MAX_BYTES)
    except ProtocolError as exc:
        assert exc.code and exc.message
        return
    assert isinstance(parsed, BaseModel)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048) | st.text(max_size=2048))
def test_event_parser_raises_only_protocol_errors_on_arbitrary_input(raw: str | bytes) -> None:
    _parse(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.booleans())
def test_event_parser_raises_only_protocol_errors_on_event_shaped_json(
    event: dict[str, Any], as_bytes: bool
) -> None:
    text = json.dumps(event)
    _parse(text.encode() if as_bytes else text)


def test_event_parser_refuses_oversized_messages_before_parsing() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_event("[" * (MAX_BYTES + 1), max_bytes=MAX_BYTES)
    assert caught.value.code == "message_too_large"


def _encode(pcm: np.ndarray, fmt: str, codec: str) -> bytes:
    """A few seconds of real speech encoded with PyAV (``fmt`` container, ``codec``)."""
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=16000)
        stream.layout = "mono"  # type: ignore[union-attr]
        frame = av.AudioFrame.from_ndarray(
            (pcm * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in stream.encode(frame):  # type: ignore[union-attr]
            container.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            container.mux(packet)
    return out.getvalue()


@pytest.fixture(scope="module")
def real_files() -> dict[str, bytes]:
    pcm = decode_audio(data_path("speechbrain/spk1_snt1.wav"))[: 16000 * 2]
    wav = _encode(pcm, "wav", "pcm_s16le")
    files = {
        "wav": wav,
        "flac": _encode(pcm, "flac", "flac"),
        "ogg": _encode(pcm, "ogg", "libopus" if "libopus" in av.codecs_available else "flac"),
        "mp3": _encode(pcm, "mp3", "libmp3lame") if "libmp3lame" in av.codecs_available else wav,
    }
    for name, data in files.items():  # intact, each decodes to about its 2 s
        assert abs(len(decode_audio(data)) - 32000) < 4000, name
    return files


_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fuzz-decode")


def _decode_bounded(data: bytes) -> None:
    """Decode (and probe) ``data``: audio or AudioDecodeError, within DECODE_LIMIT_S."""

    def work() -> None:
        try:
            audio = decode_audio(data)
        except AudioDecodeError as exc:
            assert exc.args
            return
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert np.isfinite(audio).all()
        with contextlib.suppress(AudioDecodeError):
            probe(data)

    _pool.submit(work).result(timeout=DECODE_LIMIT_S)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_decoder_on_arbitrary_bytes(data: bytes) -> None:
    _decode_bounded(data)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["wav", "flac", "ogg", "mp3"]),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=8),
    splice=st.binary(max_size=64),
)
# Found by this test: a flipped header byte gives frames the format converter refuses.
@example(kind="wav", cut=0.34973646931027297, flips=[(0.001, 184)], splice=b"")
def test_decoder_on_truncated_and_corrupted_real_files(
    real_files: dict[str, bytes],
    kind: str,
    cut: float,
    flips: list[tuple[float, int]],
    splice: bytes,
) -> None:
    data = bytearray(real_files[kind][: int(len(real_files[kind]) * cut)])
    for where, mask in flips:
        if data:
            data[int(where * (len(data) - 1))] ^= mask
    if splice and data:
        at = len(data) // 2
        data[at:at] = splice
    _decode_bounded(bytes(data))
