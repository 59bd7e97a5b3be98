"""A long Opus WebM that declares no duration, as a browser's MediaRecorder writes
it (a live stream: no duration, no cues), built quickly: one minute of low-level
noise is encoded once and its packets are muxed again and again with shifted
timestamps. At 6 kbit/s an hour is about 3 MB."""

from __future__ import annotations

import io

import av
import numpy as np

RATE = 48000
FRAME_MS = 60


def _encoded_minute(bitrate: int) -> tuple[list[tuple[bytes, int, int]], av.AudioCodecContext]:
    """Packets (data, pts, duration) of one minute of quiet noise, and the encoder."""
    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.sample_rate = RATE
    codec.layout = "mono"
    codec.format = av.AudioFormat("s16")
    codec.bit_rate = bitrate
    codec.options = {"frame_duration": str(FRAME_MS)}
    codec.open()
    noise = (np.random.default_rng(7).standard_normal(RATE * 60) * 300).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(noise[None, :], format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = 0
    packets = [*codec.encode(frame), *codec.encode(None)]
    return [(bytes(p), int(p.pts or 0), int(p.duration or 0)) for p in packets], codec


def long_webm(minutes: float, bitrate: int = 6000) -> bytes:
    """``minutes`` of Opus noise in a WebM with no declared duration."""
    minute, codec = _encoded_minute(bitrate)
    out_buf = io.BytesIO()
    with av.open(out_buf, "w", format="webm", options={"live": "1"}) as out:
        stream = out.add_stream("libopus", rate=RATE)
        stream.layout = "mono"
        stream.codec_context.extradata = codec.extradata
        step = RATE * 60
        for copy in range(int(np.ceil(minutes))):
            for data, pts, duration in minute:
                if copy * 60 + pts / RATE >= minutes * 60:
                    break
                packet = av.Packet(data)
                packet.stream = stream
                packet.pts = packet.dts = copy * step + pts
                packet.duration = duration
                packet.time_base = codec.time_base
                out.mux(packet)
    return out_buf.getvalue()
