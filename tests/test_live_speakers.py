"""Who is speaking, live: speaker labels in realtime sessions on real recordings.

Recordings are streamed at real-time pace over the WebSocket API into
transcribe-only sessions of the real server (Silero VAD, Whisper tiny.en, CAM++
embeddings). Live labels are scored against the references: DER (collar 0)
where there is an RTTM, speaker-attributed WER (cpWER) otherwise. The offline
meeting-mode figures on the same files are in ``tests/test_meeting.py`` and,
side by side with these, in ``bench/live_speakers.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest

from pipelines.realtime.config import SpeakerConfig, apply_session_update
from pipelines.realtime.echo import EchoGuard, envelope_db
from pipelines.realtime.protocol import ProtocolError
from pipelines.realtime.speakers import VoicePart, split_by_voice
from tests.conftest import data_path, load_clip
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.live_client import (
    EXTENSIONS,
    LiveRun,
    data_url,
    pcm24k,
    send_pcm,
    stream_live,
    transcribe_only,
)
from tests.scoring import cp_wer, der_of_turns
from tests.servers import ServerThread
from voice.diarize.online import SpeakerProfiles

KATIESTEVE = "azure-speech-sdk/katiesteve.wav"
SAMPLE = "pyannote-audio/sample.wav"
ASSEMBLED = "assembled/assembled_meeting.wav"
KATIE = "azure-speech-sdk/enrollment_audio_katie.wav"
STEVE = "azure-speech-sdk/enrollment_audio_steve.wav"
KNOWN = [
    {"known_speaker_names": ["Katie"], "known_speaker_references": [data_url(KATIE)]},
    {"known_speaker_names": ["Steve"], "known_speaker_references": [data_url(STEVE)]},
]
"""Two enrollments, one per ``session.update`` (each event stays small)."""


def show(run: LiveRun) -> str:
    return "\n".join(f"{t.start:6.2f}-{t.end:6.2f} {t.speaker}: {t.text}" for t in run.turns)


def speaker_reference(relative: str) -> dict[str, str]:
    """Reference words per speaker from a ``<stem>.speakers.txt`` (``A<TAB>text`` lines)."""
    out: dict[str, list[str]] = {}
    for line in data_path(relative).with_suffix(".speakers.txt").read_text().splitlines():
        speaker, text = line.split("\t", 1)
        out.setdefault(speaker, []).append(text)
    return {speaker: " ".join(texts) for speaker, texts in out.items()}


# --- pure parts -------------------------------------------------------------------------


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_profiles_keep_labels_stable_and_create_new_speakers() -> None:
    profiles = SpeakerProfiles(threshold=0.6)
    first = profiles.identify(unit(1, 0, 0), 2.0)
    second = profiles.identify(unit(0, 1, 0), 2.0)
    again = profiles.identify(unit(0.9, 0.1, 0), 1.0)
    assert (first.label, first.new) == ("Speaker 1", True)
    assert (second.label, second.new) == ("Speaker 2", True)
    assert (again.label, again.new) == ("Speaker 1", False)
    assert profiles.peek(unit(0, 0, 1)) is None  # nobody like that yet; nothing changed
    assert profiles.labels == ["Speaker 1", "Speaker 2"]
    # a voice known not to be Speaker 1 (the stretch before it in the same turn)
    other = profiles.identify(unit(1, 0.05, 0), 1.0, exclude=frozenset(["Speaker 1"]))
    assert other.label == "Speaker 3"


def test_a_turn_is_expected_to_get_the_label_it_then_gets() -> None:
    # What a speculative LLM request assumes before the turn is attributed.
    profiles = SpeakerProfiles(threshold=0.6)
    assert profiles.predict(unit(1, 0, 0)) == "Speaker 1"
    assert profiles.labels == []  # predicting changes nothing
    assert profiles.identify(unit(1, 0, 0), 2.0).label == "Speaker 1"
    for voice in (unit(0.9, 0.1, 0), unit(0, 1, 0), unit(0, 0.1, 0.9)):
        expected = profiles.predict(voice)
        assert profiles.identify(voice, 1.0).label == expected
    assert profiles.labels == ["Speaker 1", "Speaker 2", "Speaker 3"]


def test_enrolled_names_win_from_the_first_turn_even_on_another_channel() -> None:
    profiles = SpeakerProfiles(threshold=0.6, enroll_threshold=0.3)
    profiles.enroll("Katie", unit(1, 0, 0, 0))
    profiles.enroll("Steve", unit(0, 1, 0, 0))
    # live audio sounds only somewhat like the enrollment samples (similarity 0.45 / 0.42)
    katie = profiles.identify(unit(0.45, 0.1, 0.89, 0), 1.0)
    steve = profiles.identify(unit(0.1, 0.42, 0, 0.9), 1.0)
    assert (katie.label, katie.enrolled) == ("Katie", True)
    assert (steve.label, steve.enrolled) == ("Steve", True)
    # later turns match the voices as heard live, not only the samples
    assert profiles.identify(unit(0.4, 0.1, 0.9, 0.05), 1.0).label == "Katie"
    with pytest.raises(ValueError):
        profiles.enroll(" ", unit(1, 1, 0, 0))


def test_a_tied_first_turn_gets_no_name_until_the_tie_is_decided() -> None:
    """Cross-channel evidence too close to call (0.33 vs 0.32) names nobody: the voice is
    anonymous, and takes the name left once the other enrolled voice was heard."""
    profiles = SpeakerProfiles(threshold=0.6, enroll_threshold=0.3, margin=0.05)
    profiles.enroll("Katie", unit(1, 0, 0, 0))
    profiles.enroll("Steve", unit(0, 1, 0, 0))
    katie_voice = unit(0.33, 0.32, 0.89, 0)
    tied = profiles.identify(katie_voice, 1.0)
    assert (tied.label, tied.enrolled) == ("Speaker 1", False)
    assert profiles.peek(unit(0.1, 0.45, 0, 0.89)).label == "Steve"  # clear: named
    steve = profiles.identify(unit(0.1, 0.45, 0, 0.89), 2.0)
    assert (steve.label, steve.enrolled) == ("Steve", True)
    again = profiles.identify(unit(0.3, 0.33, 0.9, 0), 2.0)  # Katie's voice as heard live
    assert (again.label, again.enrolled) == ("Katie", True)
    assert sorted(profiles.labels) == ["Katie", "Steve"]
    # "Speaker 1" was issued once and is never given to somebody else
    assert profiles.identify(unit(0, 0, -1, -1), 1.0).label == "Speaker 2"


def test_a_tied_voice_is_named_once_its_own_voice_decides() -> None:
    profiles = SpeakerProfiles(threshold=0.6, enroll_threshold=0.3, margin=0.05)
    profiles.enroll("Katie", unit(1, 0, 0, 0))
    profiles.enroll("Steve", unit(0, 1, 0, 0))
    assert profiles.identify(unit(0.33, 0.32, 0.89, 0), 1.0).label == "Speaker 1"
    # more of the same voice, now clearly nearer Katie's sample: the centroid decides
    assert profiles.identify(unit(0.5, 0.25, 0.83, 0), 3.0).label == "Katie"


def test_a_turn_splits_where_the_voice_changes() -> None:
    a, b = unit(1, 0.1, 0), unit(0, 1, 0.1)
    parts = [VoicePart(v, 1.5 * i, 1.5) for i, v in enumerate([a, a, b, b])]
    parts.append(VoicePart(a, 6.0, 0.4))  # a short tail joins the stretch before it
    stretches = split_by_voice(parts, 0.6, 1500)
    assert [(s[0].start, s[-1].end) for s in stretches] == [(0.0, 3.0), (3.0, 6.4)]


def test_echo_guard_recognises_a_delayed_copy_of_the_agent_audio_only() -> None:
    speech = load_clip("openai-whisper/jfk.wav")[: 16000 * 4]
    other = load_clip("lhotse/2412-153948-0000.wav")[16000 : 16000 * 5]
    for delay_s, heard, expected in ((0.18, speech * 0.4, True), (0.18, other, False)):
        guard = EchoGuard()
        for i in range(0, len(speech), 640):  # agent audio sent in 40 ms chunks from t=0
            guard.agent_audio(speech[i : i + 640], 16000, i / 16000)
        verdicts = []
        for i in range(0, len(heard), 640):  # the microphone hears it delay_s later
            now = delay_s + (i + 640) / 16000
            guard.input_audio(heard[i : i + 640], 16000, now)
            verdicts.append(guard.is_echo(now))
        assert (sum(verdicts[10:]) > 0.8 * len(verdicts[10:])) is expected, verdicts
    assert len(envelope_db(speech[:1000], 16000)) == 6


def test_session_speaker_options_are_validated() -> None:
    from openai.types.realtime import RealtimeSessionCreateRequest

    from pipelines.realtime.config import SessionConfig

    def update(speakers: Any) -> SpeakerConfig:
        session = RealtimeSessionCreateRequest.model_validate(
            {"type": "realtime", "speakers": speakers}
        )
        return apply_session_update(SessionConfig(instructions=""), session).speakers

    assert update({"focus": "Katie", "threshold": 0.6, **KNOWN[0]}) == SpeakerConfig(
        True, 0.6, "Katie", ("Katie",)
    )
    for bad in (
        {"threshold": 2},
        {"focus": 3},
        {"known_speaker_names": ["A"], "known_speaker_references": []},
        {"known_speaker_names": ["A", "A"], "known_speaker_references": ["x", "y"]},
        "on",
    ):
        with pytest.raises(ProtocolError):
            update(bad)


# --- live labels on real recordings ----------------------------------------------------------


@pytest.fixture(scope="module")
def live(server: ServerThread) -> dict[str, LiveRun]:
    """Each recording streamed once, all at the same time, at real-time pace (the
    64 s assembled meeting at twice that, so it ends with the 30 s ones); the
    Katie/Steve dialogue twice: anonymous, and with the two voices enrolled by name
    and the session recorded as a meeting."""

    async def main() -> list[LiveRun]:
        return await asyncio.gather(
            stream_live(server.ws_url, KATIESTEVE),
            stream_live(server.ws_url, SAMPLE),
            stream_live(server.ws_url, ASSEMBLED, pace=2.0),
            stream_live(
                server.ws_url,
                KATIESTEVE,
                [
                    transcribe_only(speakers=KNOWN[0]),
                    transcribe_only(
                        speakers=KNOWN[1], meeting={"record": True, "title": "katiesteve"}
                    ),
                ],
            ),
        )

    runs = asyncio.run(main())
    return dict(zip(("katiesteve", "sample", "assembled", "known"), runs, strict=True))


def test_live_labels_on_a_two_person_dialogue(live: dict[str, LiveRun]) -> None:
    run = live["katiesteve"]
    reference = speaker_reference(KATIESTEVE)
    score, mapping = cp_wer(reference, run.by_speaker())
    print(f"\nlive cpWER katiesteve: {score:.3f} mapping {mapping}\n{show(run)}")
    assert sorted(run.by_speaker()) == ["Speaker 1", "Speaker 2"]
    assert score <= 0.10
    # every partial that carried a label agrees with its turn's final label
    finals = {t.item_id: t.speaker for t in run.turns}
    for delta in run.of_type("conversation.item.input_audio_transcription.delta"):
        if "speaker" in delta:
            assert delta["speaker"] == finals[delta["item_id"]]


def test_enrolled_voices_label_the_dialogue_by_name(live: dict[str, LiveRun]) -> None:
    run = live["known"]
    score, mapping = cp_wer(speaker_reference(KATIESTEVE), run.by_speaker())
    print(f"\nlive cpWER katiesteve with enrollment: {score:.3f} mapping {mapping}\n{show(run)}")
    assert mapping == {"Katie": "A", "Steve": "B"}
    # A name only on clear evidence: the first turn (1 s, "Good morning, Steve") is as
    # close to either enrollment sample, so it may stay anonymous; it is never Steve,
    # and every later turn of Katie's carries her name.
    assert run.turns[0].speaker in ("Katie", "Speaker 1")
    assert all(t.speaker in ("Katie", "Steve") for t in run.turns[1:]), show(run)
    # 0.015 with every turn named; an anonymous first turn costs its three words twice
    # (deleted from Katie, inserted as "Speaker 1": 6 of 67 words): 0.104 measured.
    assert score <= 0.15


@pytest.mark.parametrize(("name", "clip", "bound"), [("sample", SAMPLE, 0.62), ("assembled", ASSEMBLED, 0.25)])
def test_live_der_against_the_reference(
    live: dict[str, LiveRun], name: str, clip: str, bound: float
) -> None:
    run = live[name]
    score = der_of_turns(run.speaker_turns(), data_path(clip).with_suffix(".rttm"))
    speakers = {s for _, _, s in run.speaker_turns()}
    print(f"\nlive DER {clip}: {score:.3f} ({len(speakers)} speakers, {len(run.turns)} turns)")
    assert score <= bound


def test_a_recorded_session_becomes_a_meeting_with_named_speakers(
    live: dict[str, LiveRun], server: ServerThread
) -> None:
    deadline = time.monotonic() + 240
    while True:
        jobs = httpx.get(f"{server.http_url}/v1/meetings", timeout=30).json()["data"]
        job = next((j for j in jobs if j.get("filename") == "katiesteve"), None)
        assert job is not None, jobs
        if job["state"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert job["state"] == "succeeded", job
    transcript = httpx.get(
        f"{server.http_url}/v1/meetings/{job['id']}/transcript", timeout=30
    ).json()
    assert set(transcript["speakers"].values()) == {"Katie", "Steve"}
    by_name: dict[str, list[str]] = {}
    for seg in transcript["segments"]:
        by_name.setdefault(transcript["speakers"][seg["speaker"]], []).append(seg["text"])
    score, mapping = cp_wer(
        speaker_reference(KATIESTEVE), {k: " ".join(v) for k, v in by_name.items()}
    )
    assert mapping == {"Katie": "A", "Steve": "B"} and score <= 0.15
    summary = httpx.get(f"{server.http_url}/v1/meetings/{job['id']}/summary", timeout=30)
    assert summary.status_code == 200 and summary.json()["key_points"]


# --- focus and echo -------------------------------------------------------------------------

LONG_REPLY = (
    "Here is the plan for today. First we review the numbers from last week. Then we look "
    "at the new design together and decide who takes which task. After lunch we test the "
    "prototype with two customers and write down what they say. Finally we meet again at "
    "five to agree on the next steps."
)


def excerpt(relative: str, start_s: float, end_s: float) -> np.ndarray:
    # 2 s of silence after: a turn cut mid-sentence waits up to 1.5 s (adaptive server_vad)
    return pcm24k(load_clip(relative)[int(start_s * 16000) : int(end_s * 16000)], pad_s=2.0)


async def connect(server: ServerThread) -> Any:
    """A session that asked for the extensions these tests read (speaker labels, echo)."""
    import websockets

    ws = await websockets.connect(f"{server.ws_url}/v1/realtime?model=x", max_size=None)
    await ws.send(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "voice_extensions": EXTENSIONS}}))
    while json.loads(await ws.recv())["type"] != "session.updated":
        pass
    return ws


async def ask_for_long_reply(ws: Any, words: str) -> None:
    await ws.send(json.dumps({
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": words}]},
    }))
    await ws.send(json.dumps({"type": "response.create"}))


async def events_while(ws: Any, audio: np.ndarray, stop: str = "response.done") -> list[dict[str, Any]]:
    """Stream ``audio`` once the agent's audio starts; collect events until ``stop``."""
    events: list[dict[str, Any]] = []
    sender: asyncio.Task[None] | None = None
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 90))
        events.append(event)
        assert event["type"] != "error", event
        if event["type"] == "response.output_audio.delta" and sender is None:
            sender = asyncio.create_task(send_pcm(ws, audio))
        if event["type"] == stop:
            break
    assert sender is not None
    await sender
    return events


async def test_focus_ignores_a_second_voice_but_follows_the_primary(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    llm.add(
        Turn.say(LONG_REPLY, when=user_says("plan for today")),
        Turn.say(LONG_REPLY, when=user_says("plan once more")),
    )
    ws = await connect(server)
    try:
        for speakers in ({"focus": "Katie", **KNOWN[0]}, KNOWN[1]):
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "speakers": speakers}}))
            while json.loads(await ws.recv())["type"] != "session.updated":
                pass
        # Steve talks over the agent: labelled, transcribed, but no interruption, no reply
        await ask_for_long_reply(ws, "what is the plan for today")
        events = await events_while(ws, excerpt(KATIESTEVE, 12.2, 20.6))
        assert events[-1]["response"]["status"] == "completed"
        assert "input_audio_buffer.speech_started" in [e["type"] for e in events]
        completed = "conversation.item.input_audio_transcription.completed"
        while not any(e["type"] == completed for e in events):
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        heard = next(e for e in events if e["type"] == completed)
        assert heard["speaker"] == "Steve"
        with pytest.raises(TimeoutError):  # no reply to Steve
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 4))
                assert event["type"] != "response.created", event
        # the primary speaker, Katie, does interrupt
        await ask_for_long_reply(ws, "tell me the plan once more")
        events = await events_while(ws, excerpt(KATIESTEVE, 3.8, 11.6))
        assert events[-1]["response"]["status"] == "cancelled"
    finally:
        await ws.close()


async def test_the_agents_own_voice_played_back_is_not_a_user(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    """A speakerphone: the client's microphone hears the agent's audio 150 ms after it
    arrives, at 60 % volume over a little noise."""
    llm.add(Turn.say(LONG_REPLY, when=user_says("speakerphone")))
    ws = await connect(server)
    rng = np.random.default_rng(0)
    loop_back: list[np.ndarray] = []
    stop = asyncio.Event()

    async def microphone() -> None:
        step = 24000 * 40 // 1000
        pending = np.zeros(0, dtype=np.int16)
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            while loop_back:
                pending = np.concatenate([pending, loop_back.pop(0)])
            chunk = np.zeros(step, dtype=np.float32)
            take = pending[:step]
            pending = pending[len(take) :]
            chunk[: len(take)] = take * 0.6
            chunk += rng.normal(0, 30, step)
            pcm = np.clip(chunk, -32768, 32767).astype("<i2").tobytes()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}))
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.04 - time.monotonic()))

    async def delayed(pcm: np.ndarray) -> None:
        await asyncio.sleep(0.15)
        loop_back.append(pcm)

    mic = asyncio.create_task(microphone())
    echoes: set[asyncio.Task[None]] = set()
    events: list[dict[str, Any]] = []
    try:
        await ask_for_long_reply(ws, "test the speakerphone please")
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 90))
            events.append(event)
            if event["type"] == "response.output_audio.delta":
                pcm = np.frombuffer(base64.b64decode(event["delta"]), dtype="<i2")
                task = asyncio.create_task(delayed(pcm))
                echoes.add(task)
                task.add_done_callback(echoes.discard)
            if event["type"] == "response.done":
                break
        await asyncio.sleep(3.0)  # the echo's tail and any late turn
        while True:
            try:
                events.append(json.loads(await asyncio.wait_for(ws.recv(), 3)))
            except TimeoutError:
                break
    finally:
        stop.set()
        await mic
        await ws.close()
    types = [e["type"] for e in events]
    print({t: types.count(t) for t in set(types)})
    done = next(e for e in events if e["type"] == "response.done")
    assert done["response"]["status"] == "completed", done["response"]
    assert types.count("response.created") == 1  # the echo started no reply
    heard = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert all(e.get("echo") for e in heard), heard
    deleted = {e["item_id"] for e in events if e["type"] == "conversation.item.deleted"}
    assert {e["item_id"] for e in heard} <= deleted


# --- known speakers in batch transcription ---------------------------------------------------


async def test_diarized_transcription_names_known_speakers(server: ServerThread) -> None:
    """The ``openai`` SDK's own diarized transcription call with two enrolled voices."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{server.http_url}/v1", api_key="unused", timeout=300)
    result = await client.audio.transcriptions.create(
        file=data_path(KATIESTEVE),
        model="gpt-4o-transcribe-diarize",
        response_format="diarized_json",
        known_speaker_names=["Katie", "Steve"],
        known_speaker_references=[data_url(KATIE), data_url(STEVE)],
    )
    by_name: dict[str, list[str]] = {}
    for segment in result.segments:
        by_name.setdefault(segment.speaker, []).append(segment.text)
    score, mapping = cp_wer(
        speaker_reference(KATIESTEVE), {k: " ".join(v) for k, v in by_name.items()}
    )
    assert mapping == {"Katie": "A", "Steve": "B"} and score <= 0.15, (score, by_name)
    async with httpx.AsyncClient(timeout=60) as http:
        bad = await http.post(
            f"{server.http_url}/v1/audio/transcriptions",
            files={"file": ("a.wav", data_path(KATIESTEVE).read_bytes(), "audio/wav")},
            data={"response_format": "diarized_json", "known_speaker_names[]": ["Katie"]},
        )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "known_speaker_references"


async def test_a_pause_embeds_the_voiced_tail_and_leaves_the_silence_out() -> None:
    """Trailing silence begins: the tail is embedded at once (ready when the turn ends)
    and the silence is never embedded; voice resuming keeps the pieces' times."""
    from pipelines.realtime.speakers import SessionSpeakers
    from voice.diarize.embedding import CamPlusPlusEmbedder

    speakers = SessionSpeakers(CamPlusPlusEmbedder("cpu"))
    voice = load_clip("speechbrain/spk1_snt1.wav")
    voice16 = (voice * 32768).astype(np.int16)
    second = 8000  # 0.5 s
    turn = speakers.begin()
    turn.add(voice16[:second])
    turn.pause()  # 0.5 s >= min_tail_ms: embedded now
    turn.add(np.zeros(16000, dtype=np.int16))  # 1 s of trailing silence: left out
    turn.resume()  # the user went on
    turn.add(voice16[second : 2 * second])
    turn.pause()
    turn.add(np.zeros(8000, dtype=np.int16))
    parts = await turn.parts()
    assert [(round(p.start, 2), round(p.duration, 2)) for p in parts] == [(0.0, 0.5), (1.5, 0.5)]
    assert turn.samples == 2 * second + 24000
