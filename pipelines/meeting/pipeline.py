"""The meeting pipeline (batch): a recording in, a speaker-labelled transcript and a
structured summary out.

Stages, in order, with their share of the progress bar (:data:`STAGE_WEIGHTS`):

- ``decode``: the file is decoded once, 30 s at a time, into a 16 kHz float32
  array (an hour is about 230 MB, held once) while the VAD scans each chunk;
- ``transcribe``: the VAD's speech, padded and joined across short pauses, is
  packed into clips filled up to 29.5 s (:func:`~pipelines.meeting.windows.fill_clips`:
  long silences left out, runs of speech cut at a pause to fill a clip, so each
  Whisper encoder pass, which always costs 30 s, is mostly speech; a clip with room
  to spare is widened into the audio around its speech, where quiet words the VAD
  scored low may be: :func:`~pipelines.meeting.windows.widen_clips`), decoded a
  batch of clips at a time (progress per batch); word times are moved back onto
  the recording's time line. The language detected in the first batch is used
  for the rest;
- ``diarize``: one call of the diarizer over the whole array, started as soon as
  decoding ends and running alongside the transcription (its time here is what
  is left of it once the transcription is done); it gets the decode stage's VAD
  frame probabilities, so a Silero-based diarizer need not run Silero again;
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
import bisect
import collections
import itertools
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.clock import Clock, MonotonicClock
from pipelines.meeting.align import AlignOptions, align
from pipelines.meeting.document import TranscriptDocument, TranscriptSegment, display_name
from pipelines.meeting.extents import (
    cut_at_silences,
    place_on_turns,
    reach_speech_edges,
    trim_to_voice,
)
from pipelines.meeting.known_speakers import KnownSpeaker, name_speakers
from pipelines.meeting.overlap_voices import voice_labels
from pipelines.meeting.progress import STAGE_WEIGHTS, Progress, ProgressPlan, Reporter
from pipelines.meeting.stages import DecodedAudio, clip_words, decode_with_vad
from pipelines.meeting.summarize import SummaryOptions, summarize
from pipelines.meeting.summary import MeetingSummary
from pipelines.meeting.windows import (
    Clip,
    fill_clips,
    pack_clips,
    quietest_point,
    speech_pieces,
    unheard,
    widen_clips,
)
from voice.diarize import DiarizeOptions, Diarizer, SpeakerEmbedder
from voice.diarize.base import SpeakerTurn
from voice.llm import ChatClient
from voice.stt.base import (
    SAMPLE_RATE,
    Transcriber,
    Transcription,
    Word,
    transcribe_clips_async,
)
from voice.vad import SpeechClassifier, VadOptions, make_classifier
from voice.vad.base import FrameProbabilities

PLANNING_VAD = VadOptions(threshold=0.15, min_speech_ms=100, silence_ms=300)
"""VAD settings that find the speech clips are made of (a low threshold keeps
quiet, far speech: what falls outside every clip is never transcribed). 0.1 kept
the AMI excerpts' recall (trn06 1.0 against 0.93) but let noise into the meeting
bench's long recording (false alarm 2.9 -> 5.1 % of its speech, DER 0.49 -> 0.51);
0.07 brought more noise and no more speech; single-frame onsets (``min_speech_ms``
32-64) heard trn00's far "Okay"s but tipped trn01's whole clip into Whisper's
no-speech rule."""
CLIP_PAD_S = 0.6
"""Audio kept around each speech region (s)."""
CLIP_JOIN_GAP_S = 3.0
"""Pauses shorter than this (s) stay inside a clip, with any quiet words they hold."""
UNHEARD_S = 0.8
"""Speech (s) the VAD found but the first decoding gave no word for, from which a
second decoding is tried: Whisper may end a clip's text early (an utterance cut
by the clip's end, a reply after a long pause)."""
HEARD_MARGIN_S = 0.3
"""Word times are loose: speech this close (s) to a word counts as heard."""
EDGE_PAD_S = 0.2
"""The first and last word of a speech region reach this far (s) past its VAD edges."""
EDGE_STRETCH_S = 1.0
"""At most this much (s) is added to a word reaching a speech region's edge."""
VOICE_FLOOR = 0.1
"""A word is trimmed to the frames in it the VAD scores at least this (the planning
threshold's stay level is 0.075; far-field words score 0.1-0.3)."""
VOICE_PAD_S = 0.25
"""Margin (s) a trimmed word keeps around its voiced frames (DER's usual collar). On the
AMI excerpts, scored on the segments the API returns with the kit diarizer: mean DER
(collar 0.25 s) 0.668 -> 0.401, trn02 2.34 -> 0 ("I am." had begun 1.3 s early);
a 0.1 s margin cut trn02's speech recall to 0.80."""
WORD_SILENCE_S = 0.5
"""A word spanning a silence this long (s; no VAD voice, no diarizer turn) is cut to one
side of it. AMI trn04's "So" over 23.5-27.2 s: its DER 0.537 -> 0.491; 0.5 and 0.8 s
score the same on every AMI excerpt."""


def speaker_segments(
    words: list[Word],
    turns: list[SpeakerTurn],
    speech: FrameProbabilities | None,
    options: AlignOptions | None = None,
    *,
    samples: np.ndarray | None = None,
    embedder: SpeakerEmbedder | None = None,
) -> list[TranscriptSegment]:
    """The transcript's segments. ``words`` are placed on the diarizer's speech where
    Whisper put a remark on none (:func:`place_on_turns`), cut where one spans a pause
    that neither ``speech`` (the VAD's frame scores) nor ``turns`` hear a voice in
    (:func:`cut_at_silences`), and aligned with ``turns``; with the recording's
    ``samples`` and an ``embedder``, words said where turns overlap go to the voice
    that says them (:func:`voice_labels`). Blocking when embedding: a worker thread."""
    words = place_on_turns(words, turns)
    if speech is not None:
        words = cut_at_silences(
            words, speech, turns, floor=VOICE_FLOOR, min_silence_s=WORD_SILENCE_S, pad_s=VOICE_PAD_S
        )
    words = sorted(words, key=lambda w: (w.start, w.end))
    fixed = (
        voice_labels(words, turns, samples, embedder)
        if samples is not None and embedder is not None
        else None
    )
    return align(words, turns, options, fixed)


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
        overlap: bool = True,
    ) -> None:
        """``embedder`` names speakers from ``MeetingOptions.known_speakers``;
        ``overlap``: diarize alongside the transcription (False: after it)."""
        self.overlap = overlap
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
        audio = await self.decode(Path(source), opts.max_audio_s, report)
        lap("decode")
        diarizing: asyncio.Future[list[SpeakerTurn]] | None = None
        diarizer_s = 0.0  # how long the diarizer itself ran

        def timed_diarize() -> list[SpeakerTurn]:
            nonlocal diarizer_s
            start = self.clock.now()
            turns = self.diarizer.diarize(audio.samples, diarize_options, audio.frame_probabilities)
            diarizer_s = round(self.clock.now() - start, 3)
            return turns

        def diarize() -> asyncio.Future[list[SpeakerTurn]]:
            return asyncio.ensure_future(asyncio.to_thread(timed_diarize))

        if audio.speech and self.overlap:  # runs alongside the transcription
            diarizing = diarize()
        try:
            words, language, stt_used, windows = await self.transcribe_speech(
                audio, opts.language, report
            )
            lap("transcribe")
            if words and diarizing is None:
                diarizing = diarize()
            turns: list[SpeakerTurn] = []
            if diarizing is not None:
                report("diarize", 0.0)
                turns = list(await diarizing)
            if not words:
                turns = []
            lap("diarize")
        finally:
            if diarizing is not None and not diarizing.done():
                diarizing.cancel()  # its thread finishes in the background
        voices = self.embedder or getattr(self.diarizer, "voice_embedder", None)
        segments = await asyncio.to_thread(
            speaker_segments, words, turns, audio.frame_probabilities, self.align_options,
            samples=audio.samples, embedder=voices,
        )
        labels = list(dict.fromkeys(s.speaker for s in segments))
        meta: dict[str, Any] = {
            "source": Path(source).name,
            "stt": stt_used,
            "windows": windows,
            "speech_s": round(sum(e - s for s, e in audio.speech), 3),
            "diarizer": type(self.diarizer).__name__,
            "diarize_options": asdict(diarize_options),
            "diarized_speakers": len({t.speaker for t in turns}),
            # the diarizer's own run time: alongside the transcription it is hidden in
            # timings_s (whichever of the two ends last sets the stages' times)
            "diarizer_s": diarizer_s,
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

    async def decode(
        self,
        source: Path,
        max_s: float | None = None,
        report: Callable[[str, float], None] = lambda stage, fraction: None,
    ) -> DecodedAudio:
        """The ``decode`` stage alone: ``source`` decoded to 16 kHz with its speech found
        (:data:`PLANNING_VAD`). Safe to cancel: the thread stops at its next 30 s chunk."""
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

    async def transcribe_speech(
        self,
        audio: DecodedAudio,
        language: str | None = None,
        report: Callable[[str, float], None] = lambda stage, fraction: None,
    ) -> tuple[list[Word], str, dict[str, Any], int]:
        """The ``transcribe`` stage alone: words of every clip in time order (on the
        recording's time line), the language used (as the first clip reported it),
        the transcriber's options echoed, the clip count. Safe to cancel between batches.

        Speech left without words by the first decoding (:data:`UNHEARD_S`) is
        packed into new clips and decoded once more; what Whisper hears there is kept.
        """
        cut = lambda a, b: quietest_point(audio.samples, SAMPLE_RATE, a, b)  # noqa: E731
        clips = widen_clips(
            fill_clips(
                audio.speech, audio.duration, pad_s=CLIP_PAD_S, join_gap_s=CLIP_JOIN_GAP_S,
                pick_cut=cut,
            ),
            audio.duration,
        )
        state = _ClipRun(language, sum(c.duration for c in clips) or 1.0)
        report("transcribe", 0.0)
        words = await self._decode_clips(audio, clips, state, report)
        heard = [(w.start - HEARD_MARGIN_S, w.end + HEARD_MARGIN_S) for w in words]
        missed = unheard(audio.speech, heard, UNHEARD_S)
        again = pack_clips(
            speech_pieces(missed, audio.duration, pad_s=CLIP_PAD_S, join_gap_s=0.0, pick_cut=cut)
        )
        if again:
            state.total += sum(c.duration for c in again)
            extra = await self._decode_clips(audio, again, state, report)
            # the padding is context only: words already heard there are not taken twice;
            # a word's times are loose at a clip's start, so touching missed speech is enough
            in_missed, in_heard = _touching(missed), _touching(heard)
            extra = [w for w in extra if in_missed(w) and not in_heard(w)]
            words = sorted(words + extra, key=lambda w: (w.start, w.end))
        state.used["second_pass_clips"] = len(again)
        words = reach_speech_edges(
            words, audio.speech, pad_s=EDGE_PAD_S, max_stretch_s=EDGE_STRETCH_S,
            duration_s=audio.duration,
        )
        if audio.frame_probabilities is not None:
            words = trim_to_voice(
                words, audio.frame_probabilities, floor=VOICE_FLOOR, pad_s=VOICE_PAD_S
            )
        return words, state.detected, state.used, len(clips) + len(again)

    async def _decode_clips(
        self,
        audio: DecodedAudio,
        clips: list[Clip],
        state: _ClipRun,
        report: Callable[[str, float], None],
    ) -> list[Word]:
        """Words of ``clips``, decoded a batch at a time, as many batches at once as the
        transcriber runs (its ``concurrency``), taken in order (progress after each).
        While the language is still unknown, the first batch is decoded alone (it sets
        the language of the rest). Cancelling stops waiting; batches already running
        finish in their threads and are dropped."""
        options = getattr(self.transcriber, "options", None)
        group = max(1, int(getattr(options, "clip_batch_size", 1)))
        lanes = max(1, int(getattr(self.transcriber, "concurrency", 1)))
        want_words = self.transcriber.capabilities.word_timestamps
        batches = [clips[first : first + group] for first in range(0, len(clips), group)]
        running: collections.deque[asyncio.Future[list[Transcription]]] = collections.deque()
        words: list[Word] = []
        try:
            for n, batch in enumerate(batches):
                ahead = n + len(running)
                while ahead < len(batches) and len(running) < lanes and (
                    state.language is not None or not running
                ):
                    running.append(asyncio.ensure_future(transcribe_clips_async(
                        self.transcriber,
                        [clip.samples(audio.samples, SAMPLE_RATE) for clip in batches[ahead]],
                        word_timestamps=want_words,
                        language=state.language,
                    )))
                    ahead += 1
                results = await running.popleft()
                for clip, result in zip(batch, results, strict=True):
                    state.take(result)
                    words.extend(clip_words(result, clip))
                    state.done += clip.duration
                report("transcribe", min(1.0, state.done / state.total))
        finally:
            for future in running:
                future.cancel()
        return words


def _touching(spans: list[tuple[float, float]]) -> Callable[[Word], bool]:
    """A test of whether a word's time overlaps one of ``spans`` (s), O(log n) a word:
    among the spans starting before the word ends, the furthest end passes its start."""
    ordered = sorted(spans)
    starts = [start for start, _ in ordered]
    reach = list(itertools.accumulate((end for _, end in ordered), max))

    def touches(word: Word) -> bool:
        i = bisect.bisect_left(starts, word.end)
        return i > 0 and reach[i - 1] > word.start

    return touches


class _ClipRun:
    """What one recording's transcription has learnt so far: the language (from its
    first clip), the options echoed, clips decoded again, progress (s of clip audio)."""

    def __init__(self, language: str | None, total: float) -> None:
        self.language = language
        self.detected = language or ""
        self.used: dict[str, Any] = {"redecoded_clips": 0}
        self.total = total
        self.done = 0.0
        self._first = True

    def take(self, result: Transcription) -> None:
        if self._first:  # the first clip: its options and language hold for the rest
            self._first = False
            options = {k: v for k, v in result.options.items() if k not in _PER_CLIP}
            self.used.update(options)
            self.detected = result.language or self.detected
            self.language = self.language or result.language or None
        self.used["redecoded_clips"] += bool(result.options.get("redecoded"))


_PER_CLIP = ("initial_prompt", "redecoded")
