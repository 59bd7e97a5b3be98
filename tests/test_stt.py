"""Speech-to-text on real recordings with the shipped Whisper models (tiny.en, base)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import jiwer
import numpy as np
import pytest

from tests.conftest import DATA_DIR, load_clip, reference_text
from voice.audio.frames import float32_to_pcm16
from voice.settings import load_settings
from voice.stt import (
    BASE_MODEL_BYTES,
    DeviceError,
    ModelError,
    Segment,
    StreamingRecognizer,
    SttCapabilities,
    Transcription,
    WhisperOptions,
    WhisperTranscriber,
    assemble_base,
    choose_device,
    format_timestamp,
    list_models,
    render,
    resolve_model,
    to_dict,
    to_srt,
    to_text,
    to_vtt,
    transcribe_async,
)
from voice.stt.models import base_part_files, tiny_en_path
from voice.stt.whisper import CPU_CLIP_BATCH, CPU_CLIP_WORKERS

JFK = "openai-whisper/jfk.wav"
TIMINGS: dict[str, float] = {}


# --- text normalisation for WER -------------------------------------------------

_SMALL = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS_WORDS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_UNITS = {word: value for value, word in enumerate(_SMALL)}
_TENS = {word: 10 * i for i, word in enumerate(_TENS_WORDS, 2)}


def _is_number(token: str) -> bool:
    return token.isdigit() or token in _UNITS or token in _TENS


def normalize(text: str) -> str:
    """Lowercase, drop punctuation (keeping apostrophes inside words), and write numbers
    as single digits on both sides ("eighteen thirteen" and "1813" both → "1 8 1 3";
    "oh" counts as zero only between number words)."""
    text = re.sub(r"[^\w'\s]", " ", text.lower())
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    tokens = text.split()
    numbers: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in _TENS and 0 < _UNITS.get(nxt, 0) < 10:
            numbers.append(str(_TENS[tok] + _UNITS[nxt]))
            i += 2
            continue
        if tok == "oh" and (_is_number(nxt) or (i > 0 and _is_number(tokens[i - 1]))):
            numbers.append("0")
        else:
            numbers.append(str(_TENS.get(tok, _UNITS.get(tok, tok))))
        i += 1
    return " ".join(ch for tok in numbers for ch in (list(tok) if tok.isdigit() else [tok]))


def test_normalize() -> None:
    assert normalize("In eighteen thirteen.") == normalize("In 1813.") == "in 1 8 1 3"
    assert normalize("nine oh two, twenty one") == "9 0 2 2 1"
    assert normalize("Oh, hello! What's 'this'?") == "oh hello what's this"


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stt-cache")


def _load(name: str, cache: Path, **kw: int) -> WhisperTranscriber:
    t0 = time.perf_counter()
    model = WhisperTranscriber(WhisperOptions(name, cache, **kw))  # type: ignore[arg-type]
    TIMINGS[f"{name} load s"] = time.perf_counter() - t0
    return model


@pytest.fixture(scope="module")
def tiny(cache_dir: Path) -> WhisperTranscriber:
    return _load("tiny.en", cache_dir)


@pytest.fixture(scope="module")
def base(cache_dir: Path) -> WhisperTranscriber:
    return _load("base", cache_dir)  # joins base into the fresh cache dir first


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_clip(JFK)


@pytest.fixture(scope="module")
def harvard_words(tiny: WhisperTranscriber) -> Transcription:
    return tiny.transcribe(load_clip("realpython/harvard.wav"), word_timestamps=True)


def _gold_wer_clips() -> list[str]:
    records = [json.loads(line) for line in (DATA_DIR / "manifest.jsonl").read_text().splitlines()]
    return [
        r["path"]
        for r in records
        if r["category"] == "wer" and r["reference_quality"].startswith("gold")
    ]


# --- accuracy -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("model_name", "bound"), [("tiny.en", 0.15), ("base", 0.08)])
def test_wer_on_gold_clips(model_name: str, bound: float, request: pytest.FixtureRequest) -> None:
    """tiny.en clip by clip (``transcribe``, the live path); base, the meeting model, as
    meetings decode it (``transcribe_clips``: batched, no fallback re-decodes), where no
    clip may come back empty. Measured: tiny.en 2.8 %, base 5.0 % (9 of 181 words)."""
    model: WhisperTranscriber = request.getfixturevalue(
        "tiny" if model_name == "tiny.en" else "base"
    )
    clips = _gold_wer_clips()
    assert len(clips) >= 10 and JFK in clips
    audios = [load_clip(clip) for clip in clips]
    t0 = time.perf_counter()
    if model_name == "base":
        hyps = [r.text for r in model.transcribe_clips(audios, word_timestamps=True)]
    else:
        hyps = [model.transcribe(audio).text for audio in audios]
    infer_s = time.perf_counter() - t0
    audio_s = sum(len(a) for a in audios) / 16000
    rows, errors, words = [], 0, 0
    for clip, hyp in zip(clips, hyps, strict=True):
        ref_n, hyp_n = normalize(reference_text(clip)), normalize(hyp)
        out = jiwer.process_words(ref_n, hyp_n)
        n_err = out.substitutions + out.deletions + out.insertions
        n_ref = len(ref_n.split())
        errors, words = errors + n_err, words + n_ref
        rows.append(f"{clip:42s} {n_err:3d}/{n_ref:3d} {n_err / n_ref:6.1%}  {hyp}")
        if clip == JFK:
            assert hyp_n == ref_n, f"{model_name} on jfk.wav: {hyp!r}"
    overall = errors / words
    TIMINGS[f"{model_name} RTF"] = infer_s / audio_s
    print(f"\n{model_name}: WER {overall:.1%} ({errors}/{words}), RTF {infer_s / audio_s:.3f}")
    print("\n".join(rows))
    print(TIMINGS)
    assert [clip for clip, hyp in zip(clips, hyps, strict=True) if not hyp.strip()] == []
    assert overall <= bound


def test_word_timestamps_and_options(tiny: WhisperTranscriber, jfk: np.ndarray) -> None:
    result = tiny.transcribe(jfk, word_timestamps=True)
    duration = len(jfk) / 16000
    assert result.duration == pytest.approx(duration) and result.language == "en"
    assert " ".join(s.text for s in result.segments) == result.text
    words = [w for s in result.segments for w in s.words]
    assert len(words) == 22
    assert normalize(" ".join(w.text for w in words)) == normalize(result.text)
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start <= w.end <= duration + 0.01 for w in words)
    assert all(0.0 <= w.probability <= 1.0 for w in words)
    for seg in result.segments:
        assert all(seg.start - 0.01 <= w.start and w.end <= seg.end + 0.01 for w in seg.words)
    opts = result.options
    assert (opts["device"], opts["compute_type"], opts["beam_size"]) == ("cpu", "int8", 1)
    assert opts["model"] == "tiny.en" and opts["word_timestamps"] is True
    assert opts["condition_on_previous_text"] is False and opts["batched"] is False
    assert tiny.capabilities == SttCapabilities(
        streaming=False, word_timestamps=True, batched=False
    )
    # int16 input gives the same text
    assert tiny.transcribe(float32_to_pcm16(jfk)).text == result.text
    assert tiny.transcribe(np.zeros(0, dtype=np.float32)).text == ""


def test_a_live_utterance_decodes_over_a_window_of_its_own_length(
    tiny: WhisperTranscriber, jfk: np.ndarray
) -> None:
    """The live path (utterance + 10 s window) says what the 30 s window says, gives
    nothing for silence, and leaves audio over 20 s to the usual decoding."""
    for clip in ("speechbrain/spk1_snt1.wav", "lhotse/LJ002-0035.wav", JFK):
        audio = load_clip(clip)
        live = tiny.transcribe_utterance(audio)
        assert live.options["short_window"] is True
        assert len(live.segments) == 1 and live.segments[0].stats is not None
        assert live.segments[0].stats.no_speech_prob < 0.5
        full = tiny.transcribe(audio)
        assert jiwer.wer(normalize(full.text), normalize(live.text)) <= 0.1, (live.text, full.text)
    rng = np.random.default_rng(7)
    hiss = (rng.standard_normal(16000 * 3) * 0.002).astype(np.float32)
    assert tiny.transcribe_utterance(hiss).text == ""
    long = tiny.transcribe_utterance(np.concatenate([jfk, jfk]))  # 22 s
    assert "short_window" not in long.options
    assert normalize(long.text).count("country") >= 3
    # A session prompt (spellings, names) does not eat into the text's length bound.
    prompted = tiny.transcribe_utterance(jfk, prompt="Kennedy's inaugural address. " * 25)
    assert normalize(prompted.text).endswith("for your country"), prompted.text


async def test_transcribe_async(tiny: WhisperTranscriber) -> None:
    told: list[Segment] = []
    result = await transcribe_async(tiny, load_clip("lhotse/LJ002-0020.wav"), on_segment=told.append)
    assert normalize(result.text) == normalize(reference_text("lhotse/LJ002-0020.wav"))
    # The sink was told each segment, with the decoder's statistics, as it was decoded.
    assert tuple(told) == result.segments and told[0].stats is not None
    assert told[0].stats.tokens and told[0].stats.avg_logprob < 0

    class Stop(Exception):
        pass

    def refuse(segment: Segment) -> None:
        raise Stop

    with pytest.raises(Stop):  # a sink's exception stops the transcription
        await transcribe_async(tiny, load_clip("lhotse/LJ002-0020.wav"), on_segment=refuse)


@pytest.mark.slow
def test_batched_pipeline_on_long_audio(cache_dir: Path, tiny: WhisperTranscriber) -> None:
    """batch_size > 1 decodes several VAD chunks of a 64 s recording in batches of 2."""
    batched = _load("tiny.en", cache_dir, batch_size=2)
    assert batched.capabilities.batched
    clip = "assembled/assembled_meeting.wav"
    audio = load_clip(clip)
    result = batched.transcribe(audio)
    assert result.options["batched"] is True and result.options["batch_size"] == 2
    assert result.options["vad_filter"] is True
    assert len(result.segments) >= 3
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end <= len(audio) / 16000 + 0.05
    wer = jiwer.wer(normalize(reference_text(clip)), normalize(result.text))
    print(f"\nbatched tiny.en on {clip}: WER {wer:.1%}")
    assert wer < 0.25
    short = batched.transcribe(load_clip(JFK))  # one window: no batching
    assert short.options["batched"] is False


# --- models ---------------------------------------------------------------------


def test_assemble_base_fresh_and_idempotent(tmp_path: Path) -> None:
    target = assemble_base(tmp_path)
    assert target == tmp_path / "whisper-base"
    assert (target / "model.bin").stat().st_size == BASE_MODEL_BYTES
    assert {p.name for p in target.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    inode = (target / "model.bin").stat().st_ino
    assert resolve_model("base", tmp_path) == target
    assert (target / "model.bin").stat().st_ino == inode  # not rebuilt


def _race(barrier: multiprocessing.synchronize.Barrier, cache: Path) -> None:
    barrier.wait()
    assemble_base(cache)


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(8 << 20):
                digest.update(block)
    return digest.hexdigest()


def test_assemble_base_two_processes_race(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_race, args=(barrier, tmp_path)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    model = tmp_path / "whisper-base" / "model.bin"
    assert model.stat().st_size == BASE_MODEL_BYTES
    assert _sha256([model]) == _sha256(list(base_part_files()))
    assert not list(tmp_path.glob(".whisper-base-*"))  # no temp dirs left behind


def test_assemble_base_size_mismatch(tmp_path: Path) -> None:
    part1, part2 = base_part_files()
    broken = tmp_path / "model.bin.part2"
    with open(part2, "rb") as src:
        broken.write_bytes(src.read(1 << 20))
    with pytest.raises(ModelError, match="expected 145,217,532"):
        assemble_base(tmp_path / "cache", parts=(part1, broken))
    assert not (tmp_path / "cache" / "whisper-base").exists()


def test_user_model_directory_and_settings(tmp_path: Path, jfk: np.ndarray) -> None:
    user_dir = str(tiny_en_path())
    settings = load_settings(realtime_stt_model=user_dir, stt_model=user_dir, cache_dir=tmp_path)
    live = WhisperTranscriber.from_settings(settings, realtime=True)
    assert live.model_path == Path(user_dir) and live.options.batch_size == 1
    result = live.transcribe(jfk)
    assert normalize(result.text) == normalize(reference_text(JFK))
    assert result.options["model_path"] == user_dir
    meeting = WhisperTranscriber.from_settings(settings, realtime=False)
    expected_batch = settings.stt_batch_size if meeting.device == "cuda" else 1
    assert meeting.options.batch_size == expected_batch
    if meeting.device == "cpu":  # meeting clips: parallel workers sharing the threads
        assert meeting.options.num_workers == meeting.concurrency == CPU_CLIP_WORKERS
        assert meeting.options.clip_batch_size == CPU_CLIP_BATCH
        four = WhisperTranscriber.from_settings(settings, False, cpu_threads=4)
        assert four.options.cpu_threads == 4 // CPU_CLIP_WORKERS
        assert live.options.num_workers == 2  # live: unchanged, the threads as given
        assert live.options.cpu_threads == settings.stt_cpu_threads
    with pytest.raises(ModelError, match="model.bin"):
        resolve_model(str(tmp_path), tmp_path)


def test_list_models(tmp_path: Path) -> None:
    infos = {m.name: m for m in list_models(tmp_path, default="base")}
    assert infos["base"].installed and infos["base"].default  # parts present, not yet joined
    assert not (tmp_path / "whisper-base").exists()
    assert infos["tiny.en"].installed and not infos["tiny.en"].default
    assert infos["tiny.en"].size_bytes > 10_000_000
    user = {m.name: m for m in list_models(tmp_path, default=str(tiny_en_path()))}
    assert user[str(tiny_en_path())].installed and user[str(tiny_en_path())].default


def test_choose_device() -> None:
    cpu_types = ctranslate2.get_supported_compute_types("cpu")
    if ctranslate2.get_cuda_device_count() == 0:
        assert choose_device() == ("cpu", "int8")
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            choose_device("cuda")
    else:
        assert choose_device() == ("cuda", "float16")
    assert choose_device("cpu", "float32") == ("cpu", "float32")
    bad = "float16" if "float16" not in cpu_types else "int4"
    with pytest.raises(DeviceError, match="supported: "):
        choose_device("cpu", bad)
    with pytest.raises(DeviceError, match="unknown STT device"):
        choose_device("tpu")


def test_a_gpu_whisper_cannot_run_on_leaves_it_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """CTranslate2's PyPI wheel loads CUDA 12's cuBLAS at its first GPU pass: on a machine
    with only CUDA 13 libraries (the H100 image this was measured on) the model loaded and
    the first request failed. Loading now runs one encoder pass: under ``auto`` Whisper
    stays on the CPU and the log says why; an explicit ``cuda`` refuses to load, naming
    the cause. No GPU here: the device count and the encoder's error (verbatim) stand in."""
    from voice.stt import whisper as whisper_module

    cpu_types = ctranslate2.get_supported_compute_types

    class CudaWithoutCublas(whisper_module.WhisperModel):  # type: ignore[misc]
        def __init__(self, path: str, *, device: str, compute_type: str, **kw: object) -> None:
            super().__init__(path, device="cpu", compute_type="int8", **kw)
            self.on_gpu = device == "cuda"

        def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
            if self.on_gpu:
                raise RuntimeError("Library libcublas.so.12 is not found or cannot be loaded")
            return super().encode(features)

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(
        ctranslate2, "get_supported_compute_types",
        lambda device, *a: {"float16", "int8_float16"} if device == "cuda" else cpu_types(device),
    )
    monkeypatch.setattr(whisper_module, "WhisperModel", CudaWithoutCublas)
    with caplog.at_level("WARNING", logger="voice.stt.whisper"):
        stt = WhisperTranscriber.from_settings(load_settings(stt_device="auto"), True)
    assert (stt.device, stt.compute_type) == ("cpu", "int8")
    assert "libcublas.so.12" in caplog.text
    text = stt.transcribe(load_clip("openai-whisper/jfk.wav")).text
    assert "your country" in text.lower()
    with pytest.raises(DeviceError, match="nvidia-cublas-cu12"):
        WhisperTranscriber.from_settings(load_settings(stt_device="cuda"), True)

    class CudaOutOfMemory(CudaWithoutCublas):
        def __init__(self, path: str, *, device: str, compute_type: str, **kw: object) -> None:
            if device == "cuda":
                raise RuntimeError("CUDA failed with error out of memory")
            super().__init__(path, device=device, compute_type=compute_type, **kw)

    monkeypatch.setattr(whisper_module, "WhisperModel", CudaOutOfMemory)
    assert WhisperTranscriber.from_settings(load_settings(stt_device="auto"), True).device == "cpu"
    with pytest.raises(DeviceError, match="out of memory") as refused:
        WhisperTranscriber.from_settings(load_settings(stt_device="cuda"), True)
    assert "cublas" not in str(refused.value)


def test_cublas_12_from_pip_is_loaded_before_whisper_uses_the_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CTranslate2 opens libcublas.so.12 by name; pip's nvidia-cublas-cu12 keeps it where
    the loader does not look. Choosing CUDA loads the package's files into the process
    first, so that an open by name finds them. The package here is laid out as pip
    installs it (``nvidia`` a regular package, as the wheels ship it), its two libraries
    small shared objects built by the C compiler with the real sonames; no GPU: the
    device count stands in."""
    import ctypes
    import subprocess
    import sys

    from voice.stt.cuda_libs import CUBLAS_12, pip_cublas_12

    lib = tmp_path / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    (tmp_path / "nvidia" / "__init__.py").write_text("")
    (lib.parent / "__init__.py").write_text("")
    source = tmp_path / "stand_in.c"
    source.write_text("int voice_test_cublas_stand_in(void) { return 12; }\n")
    for name in CUBLAS_12:
        subprocess.run(
            ["cc", "-shared", "-fPIC", f"-Wl,-soname,{name}", "-o", str(lib / name), str(source)],
            check=True,
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("nvidia", "nvidia.cublas"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    cpu_types = ctranslate2.get_supported_compute_types
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(
        ctranslate2, "get_supported_compute_types",
        lambda device, *a: {"float16"} if device == "cuda" else cpu_types(device),
    )
    try:
        assert pip_cublas_12() == [lib / name for name in CUBLAS_12]
        assert choose_device("cpu") == ("cpu", "int8")
        assert str(lib) not in Path("/proc/self/maps").read_text()  # not for the CPU
        assert choose_device("auto") == ("cuda", "float16")
        maps = Path("/proc/self/maps").read_text()
        assert all(str(lib / name) in maps for name in CUBLAS_12)
        assert ctypes.CDLL("libcublas.so.12").voice_test_cublas_stand_in() == 12  # by name
    finally:
        for name in ("nvidia.cublas", "nvidia"):
            sys.modules.pop(name, None)

# --- streaming ------------------------------------------------------------------


class CountingTranscriber:
    """The real transcriber, counting calls and how many run at once."""

    def __init__(self, inner: WhisperTranscriber) -> None:
        self.inner = inner
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self.started = threading.Event()
        self._lock = threading.Lock()

    @property
    def capabilities(self) -> SttCapabilities:
        return self.inner.capabilities

    def transcribe(self, audio: np.ndarray, **kw: object) -> Transcription:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.started.set()
        try:
            return self.inner.transcribe(audio, **kw)  # type: ignore[arg-type]
        finally:
            with self._lock:
                self.running -= 1


async def _until(event: threading.Event) -> None:
    for _ in range(1000):
        if event.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("inference never started")


async def test_streaming_partials_grow_and_final_matches_batch(
    tiny: WhisperTranscriber, jfk: np.ndarray
) -> None:
    counting = CountingTranscriber(tiny)
    rec = StreamingRecognizer(counting, partial_interval_ms=2000)
    pcm = float32_to_pcm16(jfk)
    partials: list[tuple[float, str]] = []
    for start in range(0, len(pcm), 1600):  # 100 ms chunks, int16 as from a socket
        rec.append(pcm[start : start + 1600])
        text = await rec.maybe_partial()
        if text is not None:
            partials.append((rec.duration_ms, text))
    assert len(partials) >= 4 and partials[0][0] < 4000
    lengths = [len(text.split()) for _, text in partials]
    assert lengths[-1] > lengths[0] and lengths == sorted(lengths)
    assert rec.last_partial == partials[-1][1]
    t0 = time.perf_counter()
    final = await rec.finalize()
    TIMINGS["tiny.en final after 11 s utterance s"] = time.perf_counter() - t0
    batch = tiny.transcribe(jfk)
    assert jiwer.wer(normalize(batch.text), normalize(final.text)) <= 0.05
    assert counting.max_running == 1


async def test_streaming_short_audio_gives_no_partial(
    tiny: WhisperTranscriber, jfk: np.ndarray
) -> None:
    counting = CountingTranscriber(tiny)
    rec = StreamingRecognizer(counting, partial_interval_ms=100, min_partial_ms=300)
    rec.append(jfk[:3200])  # 200 ms
    assert await rec.maybe_partial() is None and counting.calls == 0
    rec.append(jfk[3200:8000])  # now 500 ms
    await rec.maybe_partial()
    assert counting.calls == 1
    assert await rec.maybe_partial() is None and counting.calls == 1  # nothing new since


async def test_speculation_is_reused_after_silence(
    tiny: WhisperTranscriber, jfk: np.ndarray
) -> None:
    counting = CountingTranscriber(tiny)
    rec = StreamingRecognizer(counting)
    rec.append(jfk)
    speech_end_ms = rec.duration_ms
    rec.speculate()  # trailing silence begins
    for _ in range(5):  # 500 ms of silence arrives while it runs
        rec.append(np.zeros(1600, dtype=np.float32))
        await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    final = await rec.finalize()
    TIMINGS["speculative finalize wait s"] = time.perf_counter() - t0
    assert counting.calls == 1
    assert normalize(final.text) == normalize(reference_text(JFK))
    assert (await rec.finalize(upto_ms=speech_end_ms)) is final
    assert counting.calls == 1
    # New speech after the speculation point: the final must be recomputed.
    rec.append(load_clip("lhotse/LJ002-0020.wav"))
    again = await rec.finalize()
    assert counting.calls == 2
    assert normalize(again.text).endswith("in 1 8 1 3")


async def test_a_long_turn_decodes_only_what_follows_its_last_long_pause(
    tiny: WhisperTranscriber, jfk: np.ndarray
) -> None:
    """jfk, a 600 ms pause with room noise (-36 dBFS: not quiet enough to count as
    silence by itself), then more words: once the VAD reports the pause, the last final
    decodes the pause and the new words only, and joins them to jfk's text."""
    rng = np.random.default_rng(0)
    pause = (rng.standard_normal(9600) * 0.016).astype(np.float32)  # 600 ms
    more = load_clip("lhotse/LJ002-0020.wav")  # "In 1813"

    async def turn(report_pause: bool) -> tuple[Transcription, list[int]]:
        counting = CountingTranscriber(tiny)
        lengths: list[int] = []
        inner = counting.transcribe

        def transcribe(audio: np.ndarray, **kw: object) -> Transcription:
            lengths.append(len(audio))
            return inner(audio, **kw)

        counting.transcribe = transcribe  # type: ignore[method-assign]
        rec = StreamingRecognizer(counting)
        rec.append(jfk)
        await rec.finalize()  # the pause's speculative final
        rec.append(pause)
        if report_pause:
            rec.paused(1000 * len(jfk) / 16000, 600)
        rec.append(more)
        return await rec.finalize(), lengths

    final, lengths = await turn(report_pause=True)
    assert lengths[-1] == len(pause) + len(more)  # only what follows the pause
    assert normalize(final.text).startswith(normalize(reference_text(JFK)))
    assert normalize(final.text).endswith("in 1 8 1 3")
    assert final.duration == pytest.approx((len(jfk) + len(pause) + len(more)) / 16000)
    whole, lengths = await turn(report_pause=False)  # noise is not silence: decoded whole
    assert lengths[-1] == len(jfk) + len(pause) + len(more)
    assert jiwer.wer(normalize(whole.text), normalize(final.text)) <= 0.05


async def test_words_after_a_settled_pause_go_on_with_its_sentence(
    tiny: WhisperTranscriber, jfk: np.ndarray
) -> None:
    """jfk cut after "ask not" (4.3 s), 600 ms of silence reported as a pause, then the
    rest: decoded alone, the rest opens as a sentence ("What your country..."); joined
    to the settled head, which stopped mid-sentence, it reads on in lower case."""
    head, rest = jfk[: round(4.3 * 16000)], jfk[round(4.3 * 16000) :]
    pause = np.zeros(9600, np.float32)
    assert tiny.transcribe(np.concatenate([pause, rest])).text.startswith("What your country")
    rec = StreamingRecognizer(tiny)
    rec.append(head)
    settled = await rec.finalize()
    assert not settled.text.rstrip().endswith((".", "?", "!"))
    rec.append(pause)
    rec.paused(1000 * len(head) / 16000, 600)
    rec.append(rest)
    final = await rec.finalize()
    assert final.segments[0].text == settled.text  # the head was settled, not decoded again
    assert "not what your country" in final.text
    assert final.segments[1].text.startswith("what your country")


def test_a_continued_sentence_keeps_names_and_sentence_starts() -> None:
    """Only a common opening word loses its capital, and only after an unfinished
    sentence in English."""
    from voice.stt.base import Segment
    from voice.stt.streaming import _joined

    def said(text: str, language: str = "en") -> Transcription:
        return Transcription(text, (Segment(0, 0.0, 1.0, text),), language, 1.0, {})

    def joined(head: str, tail: str, language: str = "en") -> str:
        return _joined(said(head), said(tail, language), 1.0).text

    assert joined("ask not", "What your country") == "ask not what your country"
    assert joined("and then", "John said") == "and then John said"
    assert joined("and then", "I said") == "and then I said"
    assert joined("That is all.", "What now?") == "That is all. What now?"
    assert joined("y luego", "What", "es") == "y luego What"


async def test_a_final_never_waits_behind_a_partial(tiny: WhisperTranscriber) -> None:
    """Trailing silence begins while a partial runs: when the partial heard everything
    but silence, its run is the final; when speech came after its cut, the final
    starts beside it at once."""
    counting = CountingTranscriber(tiny)
    rec = StreamingRecognizer(counting, partial_interval_ms=100)
    short = load_clip("lhotse/LJ002-0020.wav")
    rec.append(short)
    partial = asyncio.create_task(rec.maybe_partial())
    await _until(counting.started)
    rec.append(np.zeros(4800, dtype=np.float32))  # 300 ms of silence
    rec.speculate()
    final = await rec.finalize()
    assert counting.calls == 1
    assert normalize(final.text) == "in 1 8 1 3" and await partial == final.text

    rec.reset()
    counting.started.clear()
    rec.append(short)
    partial = asyncio.create_task(rec.maybe_partial())
    await _until(counting.started)
    rec.append(short)  # more speech after the partial's cut
    final = await rec.finalize()
    assert counting.calls == 3 and counting.max_running == 2
    assert normalize(final.text).endswith("in 1 8 1 3")
    await partial
    await rec.aclose()
    assert not rec.busy


async def test_cancelled_finalize_and_reset_leave_recognizer_usable(
    tiny: WhisperTranscriber, jfk: np.ndarray
) -> None:
    counting = CountingTranscriber(tiny)
    rec = StreamingRecognizer(counting)
    rec.append(jfk)
    task = asyncio.create_task(rec.finalize())
    await _until(counting.started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    final = await rec.finalize()  # picks up the run that kept going
    assert normalize(final.text) == normalize(reference_text(JFK))
    assert counting.calls == 1
    # reset() while a partial is in flight: its result is dropped, the next
    # utterance is transcribed on its own (its final beside the abandoned partial).
    counting.started.clear()
    rec.reset()
    rec.append(jfk)
    partial = asyncio.create_task(rec.maybe_partial())
    await _until(counting.started)
    rec.reset()
    short = load_clip("lhotse/LJ002-0020.wav")
    rec.append(short)
    assert rec.duration_ms == pytest.approx(1000 * len(short) / 16000)
    new_final = await rec.finalize()
    assert await partial is None
    assert normalize(new_final.text) == "in 1 8 1 3"
    assert counting.max_running <= 2 and counting.calls == 3
    await rec.aclose()
    assert not rec.busy


# --- formats --------------------------------------------------------------------

_CUE = re.compile(
    r"(\d\d+):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d+):(\d\d):(\d\d)[,.](\d\d\d)\n(.+)\n"
)


def _parse_cues(doc: str) -> list[tuple[float, float, str]]:
    def secs(h: str, m: str, s: str, ms: str) -> float:
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    return [(secs(*m.groups()[:4]), secs(*m.groups()[4:8]), m.group(9)) for m in _CUE.finditer(doc)]


def test_format_timestamp() -> None:
    assert format_timestamp(0) == "00:00:00,000"
    assert format_timestamp(3725.5) == "01:02:05,500"
    assert format_timestamp(59.9996, ".") == "00:01:00.000"
    assert format_timestamp(360000.25) == "100:00:00,250"
    assert format_timestamp(-1) == "00:00:00,000"


def test_srt_and_vtt_parse_back(harvard_words: Transcription) -> None:
    segments = harvard_words.segments
    assert len(segments) >= 2
    srt = to_srt(harvard_words)
    cues = _parse_cues(srt)
    assert len(cues) == len(segments)
    assert [int(line) for line in re.findall(r"^(\d+)$", srt, re.M)] == list(
        range(1, len(cues) + 1)
    )
    for (start, end, text), seg in zip(cues, segments, strict=True):
        assert start == pytest.approx(seg.start, abs=0.0005) and end == pytest.approx(
            seg.end, abs=0.0005
        )
        assert start <= end and text == seg.text
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)
    vtt = to_vtt(harvard_words)
    assert vtt.startswith("WEBVTT\n\n") and "," not in re.findall(r"\S+ --> \S+", vtt)[0]
    assert [(round(a, 3), round(b, 3)) for a, b, _ in _parse_cues(vtt)] == [
        (round(a, 3), round(b, 3)) for a, b, _ in cues
    ]
    doc = json.loads(render(harvard_words, "json"))
    assert doc == to_dict(harvard_words)
    assert doc["text"] == harvard_words.text and len(doc["segments"]) == len(segments)
    assert doc["options"]["compute_type"] == "int8"
    assert sum(len(s["words"]) for s in doc["segments"]) == sum(len(s.words) for s in segments)
    assert render(harvard_words, "text").strip() == harvard_words.text


@dataclass(frozen=True)
class SpeakerSegment:
    start: float
    end: float
    text: str
    speaker: str | None


def test_formats_with_speakers(harvard_words: Transcription) -> None:
    labelled = [
        SpeakerSegment(s.start, s.end, s.text, "Alice" if i < 2 else "Bob <2>")
        for i, s in enumerate(harvard_words.segments)
    ]
    srt_cues = _parse_cues(to_srt(labelled))
    assert srt_cues[0][2] == f"Alice: {labelled[0].text}"
    vtt_cues = _parse_cues(to_vtt(labelled))
    assert vtt_cues[-1][2].startswith("<v Bob &lt;2&gt;>")
    lines = to_text(labelled).splitlines()
    assert len(lines) == 2 and lines[0].startswith("Alice: ") and lines[1].startswith("Bob <2>: ")
    assert [s["speaker"] for s in to_dict(labelled)["segments"]][:2] == ["Alice", "Alice"]
    with pytest.raises(ValueError, match="unknown transcript format"):
        render(labelled, "docx")
