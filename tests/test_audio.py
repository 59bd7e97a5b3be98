"""Resampling, WAV I/O and decoding of real speech in many containers."""

from __future__ import annotations

import io
import itertools
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import data_path, load_clip
from voice.audio import (
    SUPPORTED_RATES,
    AudioDecodeError,
    StreamResampler,
    decode_audio,
    float32_to_pcm16,
    iter_decode,
    probe,
    read_wav,
    resample,
    wav_bytes,
    write_wav,
)

CLIP = "openai-whisper/jfk.wav"
RATE_PAIRS = [(s, d) for s, d in itertools.product(SUPPORTED_RATES, repeat=2) if s != d]


def _tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64)))))


# --- resampling ---------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS)
def test_resample_keeps_tone_frequency_energy_and_length(src: int, dst: int) -> None:
    x = _tone(1000.0, src)
    y = resample(x, src, dst)
    assert y.dtype == np.float32
    assert abs(len(y) - len(x) * dst / src) <= 1
    assert abs(_peak_hz(y, dst) - 1000.0) <= 2.0
    core = slice(dst // 10, -dst // 10)  # away from the filter's edge effects
    assert _rms(y[core]) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)

    pcm = float32_to_pcm16(x)
    y16 = resample(pcm, src, dst)
    assert y16.dtype == np.int16
    assert abs(_peak_hz(y16.astype(np.float32), dst) - 1000.0) <= 2.0


@pytest.mark.parametrize(("src", "dst"), [(s, d) for s, d in RATE_PAIRS if d < s])
def test_downsampling_removes_tones_above_new_nyquist(src: int, dst: int) -> None:
    freq = (dst / 2 + src / 2) / 2  # between the new and the old Nyquist frequency
    y = resample(_tone(freq, src), src, dst)
    core = y[dst // 10 : -dst // 10]
    level_db = 20 * np.log10(_rms(core) / (0.5 / np.sqrt(2)) + 1e-12)
    assert level_db < -60, f"{freq:.0f} Hz aliased at {level_db:.1f} dB"


@pytest.mark.parametrize(("src", "dst"), [(48000, 16000), (22050, 24000), (8000, 44100)])
@pytest.mark.parametrize("chunk", [160, 777])
def test_stream_resampler_matches_one_shot(src: int, dst: int, chunk: int) -> None:
    speech = resample(float32_to_pcm16(load_clip(CLIP))[:48000], 16000, src)
    one_shot = resample(speech, src, dst)
    stream = StreamResampler(src, dst, np.int16)
    for _ in range(2):  # flush() leaves it ready for a second stream
        pieces = [stream.process(speech[i : i + chunk]) for i in range(0, len(speech), chunk)]
        streamed = np.concatenate([*pieces, stream.flush()])
        assert streamed.dtype == np.int16
        assert len(streamed) == len(one_shot)
        assert np.abs(streamed.astype(np.int32) - one_shot).max() <= 4


def test_equal_rates_are_identity_and_bad_dtypes_rejected() -> None:
    x = np.arange(100, dtype=np.int16)
    assert resample(x, 16000, 16000) is x
    assert np.array_equal(StreamResampler(24000, 24000).process(x), x)
    with pytest.raises(TypeError):
        resample(x.astype(np.int8), 16000, 8000)
    with pytest.raises(TypeError):
        StreamResampler(16000, 8000, np.float32).process(x)


# --- WAV files ----------------------------------------------------------------


def test_wav_roundtrip(tmp_path: Path) -> None:
    pcm, rate = read_wav(data_path(CLIP))
    assert rate == 16000 and pcm.dtype == np.int16
    assert np.array_equal(pcm.astype(np.float32) / 32768.0, load_clip(CLIP))

    write_wav(tmp_path / "a.wav", pcm, 24000)
    again, again_rate = read_wav(tmp_path / "a.wav")
    assert again_rate == 24000 and np.array_equal(again, pcm)

    as_float = pcm.astype(np.float32) / 32768.0
    from_bytes, _ = read_wav(io.BytesIO(wav_bytes(as_float, 16000)))
    assert np.abs(from_bytes.astype(np.int32) - pcm).max() <= 1


# --- decoding -----------------------------------------------------------------


def _encode(samples: np.ndarray, rate: int, fmt: str, codec: str, layout: str = "mono") -> bytes:
    """Encode float32 samples (channels × n) at ``rate`` Hz with PyAV."""
    planes = samples if samples.ndim == 2 else samples[None, :]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planes), format="fltp", layout=layout
        )
        frame.sample_rate = rate
        ctx = stream.codec_context
        fit = av.AudioResampler(ctx.format, layout, ctx.sample_rate, ctx.frame_size or None)
        for piece in [*fit.resample(frame), *fit.resample(None)]:
            out.mux(stream.encode(piece))
        out.mux(stream.encode(None))
    return buf.getvalue()


FORMATS = {  # name: (container, codec, encode rate)
    "flac": ("flac", "flac", 16000),
    "mp3": ("mp3", "libmp3lame", 16000),
    "m4a": ("ipod", "aac", 16000),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
}


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_clip(CLIP)


@pytest.fixture(scope="module")
def encoded(speech: np.ndarray) -> dict[str, bytes]:
    files = {"wav": data_path(CLIP).read_bytes()}
    for name, (fmt, codec, rate) in FORMATS.items():
        files[name] = _encode(resample(speech, 16000, rate), rate, fmt, codec)
    # Stereo 44.1 kHz MP3 with a quieter right channel: mono must be their mean.
    hi = resample(speech, 16000, 44100)
    files["stereo.mp3"] = _encode(np.stack([hi, 0.5 * hi]), 44100, "mp3", "libmp3lame", "stereo")
    return files


def _correlation_fft(decoded: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Best normalised cross-correlation and its lag (samples), via FFT."""
    n = len(decoded) + len(reference)
    spec = np.fft.rfft(decoded, n) * np.conj(np.fft.rfft(reference, n))
    xcorr = np.fft.irfft(spec, n)
    lag = int(np.argmax(xcorr))
    norm = np.linalg.norm(decoded) * np.linalg.norm(reference)
    return float(xcorr[lag] / norm), lag if lag < n // 2 else lag - n


@pytest.mark.parametrize("name", ["wav", *FORMATS, "stereo.mp3"])
def test_decode_formats_match_original(
    name: str, encoded: dict[str, bytes], speech: np.ndarray
) -> None:
    decoded = decode_audio(encoded[name])
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(len(decoded) - len(speech)) <= 0.1 * 16000, f"{len(decoded)} vs {len(speech)}"
    expected = 0.75 * speech if name == "stereo.mp3" else speech
    corr, lag = _correlation_fft(decoded, expected)
    print(f"{name}: correlation {corr:.3f} at lag {lag} samples, {len(decoded)} samples")
    assert corr > 0.9 and abs(lag) < 0.1 * 16000
    assert _rms(decoded) == pytest.approx(_rms(expected), rel=0.1)


def test_video_container_decodes_its_audio_track(speech: np.ndarray) -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(20):
            image = np.full((64, 64, 3), i * 10, dtype=np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        fit = av.AudioResampler("fltp", "mono", 16000, audio.codec_context.frame_size)
        frame = av.AudioFrame.from_ndarray(speech[None, :], format="fltp", layout="mono")
        frame.sample_rate = 16000
        for piece in [*fit.resample(frame), *fit.resample(None)]:
            out.mux(audio.encode(piece))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    info = probe(buf.getvalue())
    assert info.codec == "aac" and info.channels == 1 and info.sample_rate == 16000
    assert "mp4" in info.container and info.duration_s is not None
    corr, _ = _correlation_fft(decode_audio(buf.getvalue()), speech)
    assert corr > 0.9


def test_probe_describes_without_decoding(encoded: dict[str, bytes]) -> None:
    info = probe(encoded["stereo.mp3"])
    assert (info.sample_rate, info.channels, info.container) == (44100, 2, "mp3")
    assert info.duration_s == pytest.approx(11.0, abs=0.1)
    assert probe(data_path(CLIP)).codec == "pcm_s16le"


def test_decode_to_other_rates(encoded: dict[str, bytes]) -> None:
    for rate in (8000, 24000, 48000):
        decoded = decode_audio(encoded["flac"], sample_rate=rate)
        assert abs(len(decoded) - 11 * rate) <= 2
        assert abs(_peak_hz(decoded, rate) - _peak_hz(decode_audio(encoded["flac"]), 16000)) < 5


def test_iter_decode_chunks_concatenate_to_decode_audio(
    encoded: dict[str, bytes], tmp_path: Path
) -> None:
    whole = decode_audio(encoded["ogg"])
    file = io.BytesIO(encoded["ogg"])
    chunks = list(iter_decode(file, chunk_s=2.0))
    assert not file.closed  # a caller's file object is left open
    assert [len(c) for c in chunks[:-1]] == [32000] * (len(chunks) - 1)
    assert 0 < len(chunks[-1]) <= 32000
    assert np.array_equal(np.concatenate(chunks), whole)

    path = tmp_path / "speech.mp3"
    path.write_bytes(encoded["mp3"])
    assert np.array_equal(np.concatenate(list(iter_decode(path, chunk_s=3.0))), decode_audio(path))


@pytest.mark.parametrize("name", ["mp3", "wav", "flac", "ogg", "webm"])
def test_file_cut_in_half_returns_the_audio_before_the_cut(
    name: str, encoded: dict[str, bytes], speech: np.ndarray
) -> None:
    data = encoded[name]
    decoded = decode_audio(data[: len(data) // 2])
    print(f"half a {name}: {len(decoded) / 16000:.2f} s of {len(speech) / 16000:.2f} s")
    assert 0.3 * len(speech) < len(decoded) < 0.7 * len(speech)
    corr, lag = _correlation_fft(decoded, speech[: len(decoded)])
    assert corr > 0.9 and abs(lag) < 1600


def _reason(source: bytes | Path) -> str:
    with pytest.raises(AudioDecodeError) as caught:
        decode_audio(source)
    assert caught.value.reason in str(caught.value)
    return caught.value.reason


def _flac_without_samples() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        out.mux(out.add_stream("flac", rate=16000, layout="mono").encode(None))
    return buf.getvalue()


def _video_without_audio() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        image = np.zeros((64, 64, 3), dtype=np.uint8)
        out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
    return buf.getvalue()


def test_broken_inputs_raise_with_the_right_reason(
    encoded: dict[str, bytes], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.m4a"
    empty.write_bytes(b"")
    assert _reason(b"") == "empty"
    assert _reason(empty) == "empty"
    assert _reason(wav_bytes(np.zeros(0, np.int16), 16000)) == "empty"
    assert _reason(_flac_without_samples()) == "empty"

    m4a = encoded["m4a"]
    assert _reason(m4a[: len(m4a) // 2]) == "truncated"  # its index (moov) is at the end
    assert _reason(encoded["wav"][:44]) == "truncated"  # header only
    assert _reason(encoded["flac"][:100]) == "truncated"
    assert _reason(encoded["mp3"][:100]) == "truncated"
    assert _reason(encoded["ogg"][:100]) == "truncated"
    assert _reason(encoded["webm"][:100]) == "truncated"

    mp3 = encoded["mp3"]
    assert _reason(mp3[:200] + bytes(len(mp3) - 200)) == "corrupt"

    notes = tmp_path / "notes.txt"
    notes.write_text("This is a text file, not audio.\n" * 40)
    assert _reason(notes) == "unsupported"
    assert _reason(notes.read_bytes()) == "unsupported"
    assert _reason(b"\x89PNG\r\n\x1a\n" + bytes(200)) == "unsupported"
    assert _reason(_video_without_audio()) == "no_audio"


def test_iter_decode_memory_stays_bounded_on_long_files(tmp_path: Path) -> None:
    pcm, _ = read_wav(data_path(CLIP))
    long_file = tmp_path / "long.wav"
    write_wav(long_file, np.tile(pcm, 22), 16000)  # about 4 minutes
    tracemalloc.start()
    try:
        total = sum(len(chunk) for chunk in iter_decode(long_file, chunk_s=10.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    decoded_bytes = 4 * total
    print(f"decoded {decoded_bytes / 1e6:.1f} MB of float32 with a peak of {peak / 1e6:.1f} MB")
    assert total == 22 * len(pcm)
    assert peak < decoded_bytes / 4  # one 10 s chunk is 0.64 MB; the whole file 15.5 MB
