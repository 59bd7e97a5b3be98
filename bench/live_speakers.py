"""Live speaker attribution bench: what it adds to a turn, and live versus offline DER.

Latency: conversation turns over the WebSocket API (real spoken questions at
real-time pace, a scripted LLM), first with live speaker labels, then with them
switched off (``session.speakers.enabled = false``). Per turn the server's
``voice.latency`` waterfall gives ``stt_final`` and ``speaker`` (ms after the end
of speech); attribution adds ``max(0, speaker - stt_final)`` before the LLM can
start. The voice-to-voice difference between the two runs shows the rest of its
cost (CPU shared with Whisper).

Diarization: each reference recording streamed live at real-time pace into a
transcribe-only session (two at a time), and the same file through the offline
meeting pipeline (Whisper base + senko). DER with collar 0 (and the UEM where
the reference has one); speaker-attributed WER for the Katie/Steve dialogue.

    .venv/bin/python -m bench.live_speakers --turns 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from bench.common import DATA, QUESTIONS, percentiles, write_result
from bench.realtime import prepare, send_clip
from tests.fakes.llm_script import Turn
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.live_client import stream_live
from tests.scoring import cp_wer, der_of_turns
from tests.servers import ServerThread

DIARIZED = (
    "pyannote-audio/sample.wav",
    "assembled/assembled_meeting.wav",
    "pyannote-audio/dev00.wav",
    "pyannote-audio/dev01.wav",
    "pyannote-audio/trn00.wav",
    "pyannote-audio/trn03.wav",
)
DIALOGUE = "azure-speech-sdk/katiesteve.wav"


async def conversation(url: str, turns: int, speakers: bool) -> dict[str, Any]:
    clips = [prepare(q) for q in QUESTIONS]
    waterfalls: list[dict[str, float | None]] = []
    v2v: list[float] = []
    async with websockets.connect(f"{url}/v1/realtime", max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "speakers": {"enabled": speakers},
            "voice_extensions": ["latency", "speakers"]}}))
        for turn in range(turns):
            clip = clips[turn % len(clips)]
            started = await send_clip(ws, clip)
            end_of_speech = started + clip.speech_end_ms / 1000
            first_audio = None
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if event["type"] == "response.output_audio.delta" and first_audio is None:
                    first_audio = time.monotonic()
                    v2v.append(1000 * (first_audio - end_of_speech))
                if event["type"] == "voice.latency":
                    waterfalls.append(event["latency_ms"])
                if event["type"] == "response.done":
                    break
            await asyncio.sleep(0.5)
    extra = [
        max(0.0, w["speaker"] - w["stt_final"])
        for w in waterfalls
        if w.get("speaker") is not None and w.get("stt_final") is not None
    ]
    return {
        "turns": len(v2v),
        "voice_to_voice_ms": percentiles(v2v),
        "stt_final_ms": percentiles([w["stt_final"] for w in waterfalls if w.get("stt_final")]),
        "speaker_ready_ms": percentiles([w["speaker"] for w in waterfalls if w.get("speaker")]),
        "attribution_added_ms": percentiles(extra) if speakers else None,
    }


def offline_documents(clips: list[str]) -> dict[str, Any]:
    from pipelines.meeting.pipeline import MeetingOptions, MeetingPipeline
    from voice.diarize import make_diarizer
    from voice.settings import load_settings
    from voice.stt import WhisperTranscriber

    settings = load_settings(stt_model="base")
    pipeline = MeetingPipeline(
        WhisperTranscriber.from_settings(settings, False), make_diarizer(settings), None
    )
    out = {}
    for clip in clips:
        result = asyncio.run(pipeline.run(DATA / clip, MeetingOptions(summarize=False)))
        out[clip] = result.document
    return out


def der(turns: list[tuple[float, float, str]], clip: str) -> float:
    rttm = (DATA / clip).with_suffix(".rttm")
    uem = rttm.with_suffix(".uem")
    return round(der_of_turns(turns, rttm, uem=uem if uem.exists() else None), 3)


def dialogue_reference() -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for line in (DATA / DIALOGUE).with_suffix(".speakers.txt").read_text().splitlines():
        speaker, text = line.split("\t", 1)
        out.setdefault(speaker, []).append(text)
    return {k: " ".join(v) for k, v in out.items()}


async def live_runs(url: str, clips: list[str]) -> dict[str, Any]:
    runs = {}
    for pair in (clips[i : i + 2] for i in range(0, len(clips), 2)):
        results = await asyncio.gather(*(stream_live(url, clip) for clip in pair))
        runs.update(zip(pair, results, strict=True))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=12)
    args = parser.parse_args()
    from voice.settings import load_settings
    from web.app import create_app

    with (
        ScriptedLlmServer(default=Turn.say("Sure. Here is a short answer.")) as llm,
        tempfile.TemporaryDirectory() as tmp,
    ):
        settings = load_settings(
            llm_base_url=llm.base_url, data_dir=Path(tmp) / "data", cache_dir=Path(tmp) / "cache"
        )
        with ServerThread(create_app(settings)) as server:
            latency = {
                "with_speakers": asyncio.run(conversation(server.ws_url, args.turns, True)),
                "without_speakers": asyncio.run(conversation(server.ws_url, args.turns, False)),
            }
            live = asyncio.run(live_runs(server.ws_url, [*DIARIZED, DIALOGUE]))
    offline = offline_documents([*DIARIZED, DIALOGUE])
    table: dict[str, Any] = {}
    for clip in DIARIZED:
        doc = offline[clip]
        table[clip] = {
            "live_der": der(live[clip].speaker_turns(), clip),
            "offline_der": der([(s.start, s.end, s.speaker) for s in doc.segments], clip),
            "live_speakers": len({s for _, _, s in live[clip].speaker_turns()}),
            "offline_speakers": len(doc.speakers),
        }
    doc = offline[DIALOGUE]
    by_label: dict[str, list[str]] = {}
    for seg in doc.segments:
        by_label.setdefault(seg.speaker, []).append(seg.text)
    table[DIALOGUE] = {
        "live_cpwer": round(cp_wer(dialogue_reference(), live[DIALOGUE].by_speaker())[0], 3),
        "offline_cpwer": round(
            cp_wer(dialogue_reference(), {k: " ".join(v) for k, v in by_label.items()})[0], 3
        ),
    }
    path = write_result(
        "live_speakers",
        {"latency": latency, "diarization": table},
        settings={"realtime_stt_model": "tiny.en", "offline": "base + senko", "turns": args.turns},
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
