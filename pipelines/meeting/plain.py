"""A recording transcribed the way meetings are, without speakers.

The meeting pipeline's ``decode`` and ``transcribe`` stages (the VAD's speech at
:data:`~pipelines.meeting.pipeline.PLANNING_VAD`, clips filled to 29.5 s, batched
decoding, a second pass over unheard speech, word times reaching the speech edges)
and its segmenting (:func:`~pipelines.meeting.align.align` with no turns), returned as
one :class:`~voice.stt.base.Transcription`: what the command line prints, so that it
hears what ``diarized_json`` hears, far-field speech included.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from pipelines.meeting.align import align
from pipelines.meeting.pipeline import MeetingPipeline
from voice.diarize.base import SpeakerTurn
from voice.stt.base import Segment, Transcriber, Transcription


class _NoDiarizer:
    """The diarizer of a transcription without speakers: never called."""

    def diarize(self, *args: object, **kwargs: object) -> list[SpeakerTurn]:
        raise RuntimeError("a transcription without speakers does not diarize")


async def transcribe_recording(
    transcriber: Transcriber,
    source: Path,
    *,
    language: str | None = None,
    max_audio_s: float | None = None,
) -> Transcription:
    """``source`` (any audio/video file) transcribed as the meeting pipeline does:
    segments split at pauses over 1 s, with their words; times in seconds. The
    options echo the transcriber's, with ``clips`` (Whisper clips decoded) and
    ``speech_s`` (seconds the VAD found).

    Models run in worker threads; safe to cancel (decoding stops at its next 30 s
    chunk, a batch of clips being decoded finishes in the background). Raises
    :class:`~voice.audio.decode.AudioDecodeError` for an undecodable file and
    :class:`~voice.audio.decode.AudioTooLongError` past ``max_audio_s``.
    """
    pipeline = MeetingPipeline(transcriber, _NoDiarizer())
    audio = await pipeline.decode(source, max_audio_s)
    words, detected, used, clips = await pipeline.transcribe_speech(audio, language)
    segments = tuple(
        Segment(i, s.start, s.end, s.text, s.words) for i, s in enumerate(align(words, []))
    )
    speech_s = round(sum(end - start for start, end in audio.speech), 3)
    return Transcription(
        " ".join(s.text for s in segments),
        segments,
        detected,
        audio.duration,
        MappingProxyType({**used, "clips": clips, "speech_s": speech_s}),
    )
