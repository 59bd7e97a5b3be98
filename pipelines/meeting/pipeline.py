"""The meeting pipeline (batch): a recording in, a speaker-labelled transcript and a
structured summary out.

Stages, in order, with their share of the progress bar (:data:`STAGE_WEIGHTS`):

- ``decode``: the file is decoded once, 30 s at a time, into a 16 kHz float32
  array (an hour is about 230 MB, held once) while the VAD scans each chunk;
- ``transcribe``: speech is transcribed in windows of about 45 s (at most 60 s;
  about 4-5 min when the transcriber is batched, so batches fill), cut in VAD
  silences, so Whisper's memory stays bounded and progress is reported per
  window; word times are moved onto the recording's time line. The language
  detected in the first window is used for the rest;
- ``diarize``: one call of the diarizer over the whole array;
- ``align``: words to speakers, then segments (:mod:`pipelines.meeting.align`);
- ``summarize`` (when asked): :mod:`pipelines.meeting.summarize`.

Model work runs in worker threads. :meth:`MeetingPipeline.run` is safe to cancel
at any point: it stops at the next stage or window boundary. Decoding stops at
its next 30 s chunk; a window being transcribed or a diarization in progress
cannot be interrupted, so its thread finishes in the background and its result
is dropped. Nothing is written anywhere; the caller writes the result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.clock import Clock, MonotonicClock
from pipelines.meeting.align import AlignOptions, align
from pipelines.meeting.document import TranscriptDocument, display_name
from pipelines.meeting.known_speakers import KnownSpeaker, name_speakers
from pipelines.meeting.progress import STAGE_WEIGHTS, Progress, ProgressPlan, Reporter
from pipelines.meeting.stages import DecodedAudio, decode_with_vad, window_words
from pipelines.meeting.summarize import SummaryOptions, summarize
from pipelines.meeting.summary import MeetingSummary
from pipelines.meeting.windows import plan_windows, quietest_point
from voice.diarize import DiarizeOptions, Diarizer, SpeakerEmbedder
from voice.llm import ChatClient
from voice.stt.base import SAMPLE_RATE, Transcriber, Word, transcribe_async
from voice.vad import SpeechClassifier, VadOptions, make_classifier

WINDOW_S = (45.0, 60.0)
"""Target and maximum transcription window (s) for an unbatched transcriber."""
BATCHED_WINDOW_S = (240.0, 300.0)
"""The same for a batched transcriber (whole batches of 30 s chunks)."""
PLANNING_VAD = VadOptions(threshold=0.35, min_speech_ms=150, silence_ms=300)
"""VAD settings that find the silences windows are cut in (a low threshold keeps
quiet speech inside windows: what falls outside is never transcribed)."""


@dataclass(frozen=True, slots=True)
class MeetingOptions:
    """What to do with one recording: ``language`` None = the transcriber's default;
    either ``num_speakers`` or ``min_speakers``/``max_speakers`` (all None: the
    diarizer decides); ``summarize``: also build a summary."""

    language: str | None = None
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    summarize: bool = True
    known_speakers: tuple[KnownSpeaker, ...] = ()
    """Named voices; matching diarized speakers get these names (needs an embedder)."""
    max_audio_s: float | None = None
    """Longest recording processed (seconds); decoding stops past it with
    :class:`~voice.audio.decode.AudioTooLongError`. None = no limit."""

    def diarize_options(self) -> DiarizeOptions:
        """The speaker-count options; raises ``ValueError`` on inconsistent counts."""
        return DiarizeOptions(self.num_speakers, self.min_speakers, self.max_speakers)


@dataclass(frozen=True)
class MeetingResult:
    """The transcript and, when asked for, the summary."""

    document: TranscriptDocument
    summary: MeetingSummary | None


class MeetingPipeline:
    """Runs the stages above with shared, already-loaded models.

    ``transcriber`` and ``diarizer`` are used from worker threads; ``llm`` None
    means summaries are always extractive. ``vad`` makes a fresh speech
    classifier per run (default Silero). One pipeline may run several
    recordings concurrently (each run has its own VAD and buffers).
    """

    def __init__(
        self,
        transcriber: Transcriber,
        diarizer: Diarizer,
        llm: ChatClient | None = None,
        *,
        vad: Callable[[], SpeechClassifier] | None = None,
        align_options: AlignOptions | None = None,
        summary_options: SummaryOptions | None = None,
        clock: Clock | None = None,
        embedder: SpeakerEmbedder | None = None,
    ) -> None:
        """``embedder`` names speakers from ``MeetingOptions.known_speakers``."""
        self.transcriber, self.diarizer, self.llm = transcriber, diarizer, llm
        self.embedder = embedder
        self.make_vad = vad or (lambda: make_classifier("silero"))
        self.align_options = align_options or AlignOptions()
        self.summary_options = summary_options or SummaryOptions()
        self.clock = clock or MonotonicClock()

    async def run(
        self,
        source: Path,
        options: MeetingOptions | None = None,
        progress: Progress | None = None,
        on_transcript: Callable[[TranscriptDocument], Awaitable[None]] | None = None,
    ) -> MeetingResult:
        """Process ``source`` (any audio/video file). Safe to cancel (module docstring).

        ``on_transcript`` is awaited with the finished transcript before the summary
        is started (so it can be published while the summary is being written).

        Raises :class:`~voice.audio.decode.AudioDecodeError` for an undecodable
        file and ``ValueError`` for inconsistent speaker counts (checked first).
        """
        opts = options or MeetingOptions()
        diarize_options = opts.diarize_options()
        stages = tuple(s for s in STAGE_WEIGHTS if s != "summarize" or opts.summarize)
        report = Reporter(progress, ProgressPlan(stages), asyncio.get_running_loop())
        timings: dict[str, float] = {}
        mark = self.clock.now()

        def lap(stage: str) -> None:
            nonlocal mark
            now = self.clock.now()
            timings[stage], mark = round(now - mark, 3), now
            report(stage, 1.0)

        report("decode", 0.0)
        audio = await self._decode(Path(source), report, opts.max_audio_s)
        lap("decode")
        words, language, stt_used, windows = await self._transcribe(audio, opts.language, report)
        lap("transcribe")
        turns = []
        if words:
            report("diarize", 0.0)
            turns = await asyncio.to_thread(self.diarizer.diarize, audio.samples, diarize_options)
        lap("diarize")
        segments = align(words, turns, self.align_options)
        labels = list(dict.fromkeys(s.speaker for s in segments))
        meta: dict[str, Any] = {
            "source": Path(source).name,
            "stt": stt_used,
            "windows": windows,
            "speech_s": round(sum(e - s for s, e in audio.speech), 3),
            "diarizer": type(self.diarizer).__name__,
            "diarize_options": asdict(diarize_options),
            "diarized_speakers": len({t.speaker for t in turns}),
        }
        document = TranscriptDocument(
            segments=tuple(segments),
            speakers={label: display_name(i) for i, label in enumerate(labels)},
            duration=audio.duration,
            language=language,
            meta=meta,
        )
        if opts.known_speakers and self.embedder is not None and segments:
            names = await asyncio.to_thread(
                name_speakers, segments, audio.samples, self.embedder, opts.known_speakers
            )
            document = document.rename_speakers(names)
            meta["known_speakers_matched"] = sorted(names.values())
        lap("align")
        if on_transcript is not None:
            await on_transcript(replace(document, meta={**meta, "timings_s": dict(timings)}))
        summary = None
        if opts.summarize:
            summary = await summarize(
                document, self.llm, self.summary_options, lambda f: report("summarize", f)
            )
            lap("summarize")
        report("done", 1.0)
        return MeetingResult(replace(document, meta={**meta, "timings_s": dict(timings)}), summary)

    async def _decode(
        self, source: Path, report: Callable[[str, float], None], max_s: float | None
    ) -> DecodedAudio:
        stop = threading.Event()
        try:
            return await asyncio.to_thread(
                decode_with_vad,
                source,
                self.make_vad(),
                PLANNING_VAD,
                lambda f: report("decode", f),
                stop,
                max_s,
            )
        finally:
            stop.set()  # on cancellation the thread stops at its next chunk

    async def _transcribe(
        self, audio: DecodedAudio, language: str | None, report: Callable[[str, float], None]
    ) -> tuple[list[Word], str, dict[str, Any], int]:
        """Words of every window, the language used (as the first window reported it),
        the transcriber's options echoed, the window count."""
        target, longest = BATCHED_WINDOW_S if self.transcriber.capabilities.batched else WINDOW_S
        windows = plan_windows(
            audio.speech,
            audio.duration,
            target_s=target,
            max_s=longest,
            pick_cut=lambda a, b: quietest_point(audio.samples, SAMPLE_RATE, a, b),
        )
        total = sum(end - start for start, end in windows) or 1.0
        done = 0.0
        words: list[Word] = []
        used: dict[str, Any] = {}
        detected = language or ""
        want_words = self.transcriber.capabilities.word_timestamps
        report("transcribe", 0.0)
        for start, end in windows:
            piece = audio.samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
            result = await transcribe_async(
                self.transcriber,
                piece,
                word_timestamps=want_words,
                language=language,
                vad_filter=True,
            )
            if not used:  # the first window: its options and language hold for the rest
                used = {k: v for k, v in result.options.items() if k != "initial_prompt"}
                detected = result.language or detected
                language = language or result.language or None
            words.extend(window_words(result, start, end))
            done += end - start
            report("transcribe", done / total)
        return words, detected, used, len(windows)
