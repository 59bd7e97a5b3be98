"""Per-stage bench: load time, resident memory, speed of each model of the default stack.

Each stage runs in its own subprocess so its memory is measured alone.

    .venv/bin/python -m bench.stages            # all stages → bench/results/stages.json
    .venv/bin/python -m bench.stages --one tts  # one stage, printed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import load_wav16k, peak_rss_mb, write_result

STAGES = ("vad-silero", "vad-webrtc", "stt-tiny.en", "stt-base", "tts", "llm")
CLIP = "openai-whisper/jfk.wav"
UTTERANCE = "azure-speech-sdk/whatstheweatherlike.wav"
REPLY = "Sure, I can help with that. The weather today is sunny and warm. Tomorrow it may rain."


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def bench_vad(backend: str) -> dict[str, Any]:
    from voice.vad import make_classifier

    audio = load_wav16k("silero-vad/test.wav")
    rss0, t0 = rss_now_mb(), time.perf_counter()
    classifier = make_classifier(backend)  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    n = classifier.frame_samples
    frames = [audio[i : i + n] for i in range(0, len(audio) - n, n)]
    classifier.probability(frames[0])
    t0 = time.perf_counter()
    for frame in frames:
        classifier.probability(frame)
    per_frame_ms = 1000 * (time.perf_counter() - t0) / len(frames)
    return {
        "load_s": round(load_s, 3),
        "rss_mb": round(rss_now_mb() - rss0, 1),
        "frame_ms": 1000 * n / 16000,
        "cost_per_frame_ms": round(per_frame_ms, 4),
    }


def bench_stt(model: str) -> dict[str, Any]:
    from voice.settings import load_settings
    from voice.stt import WhisperTranscriber

    settings = load_settings(stt_model=model, cache_dir=Path(tempfile.gettempdir()) / "voice-bench-cache")
    rss0, t0 = rss_now_mb(), time.perf_counter()
    transcriber = WhisperTranscriber.from_settings(settings, False)
    load_s = time.perf_counter() - t0
    clip, utterance = load_wav16k(CLIP), load_wav16k(UTTERANCE)
    transcriber.transcribe(utterance)  # warm-up
    t0 = time.perf_counter()
    result = transcriber.transcribe(clip)
    clip_s = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        transcriber.transcribe(utterance)
        times.append(time.perf_counter() - t0)
    return {
        "load_s": round(load_s, 3),
        "rss_mb": round(rss_now_mb() - rss0, 1),
        "rtf": round(clip_s / (len(clip) / 16000), 4),
        "clip": CLIP,
        "utterance_s": round(len(utterance) / 16000, 2),
        "utterance_latency_ms": round(1000 * min(times), 1),
        "options": dict(result.options),
    }


def bench_tts() -> dict[str, Any]:
    from voice.settings import load_settings
    from voice.tts import PiperSynthesizer
    from voice.tts.chunker import SentenceChunker
    from voice.tts.stream import speak

    rss0, t0 = rss_now_mb(), time.perf_counter()
    synth = PiperSynthesizer.from_settings(load_settings())
    load_s = time.perf_counter() - t0
    for _ in synth.synthesize("Warm up."):
        pass

    async def first_audio() -> tuple[float, float, float]:
        chunker = SentenceChunker()

        async def sentences():  # type: ignore[no-untyped-def]
            for word in REPLY.split(" "):
                for sentence in chunker.push(word + " "):
                    yield sentence
            for sentence in chunker.flush():
                yield sentence

        t0 = time.perf_counter()
        first = None
        samples = 0
        async for chunk in speak(synth, sentences(), sample_rate=24000):
            first = first or time.perf_counter() - t0
            samples += len(chunk.samples)
        total = time.perf_counter() - t0
        return first or total, total, samples / 24000

    first, total, audio_s = asyncio.run(first_audio())
    return {
        "load_s": round(load_s, 3),
        "rss_mb": round(rss_now_mb() - rss0, 1),
        "first_audio_ms": round(1000 * first, 1),
        "rtf": round(total / audio_s, 4),
        "reply_chars": len(REPLY),
    }


def bench_llm() -> dict[str, Any]:
    from voice.llm import ChatClient, LlmOptions, TextDelta
    from voice.llm.embedded import EmbeddedLlamaServer, resolve_gguf

    async def run() -> dict[str, Any]:
        t0 = time.perf_counter()
        async with EmbeddedLlamaServer(resolve_gguf("smollm2"), threads=2) as server:
            start_s = time.perf_counter() - t0
            client = ChatClient(LlmOptions(base_url=server.base_url, max_tokens=64))
            firsts, rates = [], []
            for prompt in ("What is the capital of France?", "Tell me a joke.", "How are you today?"):
                t0 = time.perf_counter()
                first = None
                tokens = 0
                async for event in client.stream([{"role": "user", "content": prompt}]):
                    if isinstance(event, TextDelta):
                        first = first or time.perf_counter() - t0
                        tokens += 1
                total = time.perf_counter() - t0
                firsts.append(first or total)
                rates.append(tokens / max(total - (first or 0), 1e-6))
            await client.aclose()
            return {
                "server_start_s": round(start_s, 2),
                "first_token_ms": round(1000 * float(np.median(firsts)), 1),
                "tokens_per_s": round(float(np.median(rates)), 1),
            }

    return asyncio.run(run())


def one(stage: str) -> dict[str, Any]:
    if stage.startswith("vad-"):
        result = bench_vad(stage[4:])
    elif stage.startswith("stt-"):
        result = bench_stt(stage[4:])
    elif stage == "tts":
        result = bench_tts()
    elif stage == "llm":
        result = bench_llm()
    else:
        raise SystemExit(f"unknown stage {stage}; choose from {', '.join(STAGES)}")
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", choices=STAGES)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    results: dict[str, Any] = {}
    for stage in STAGES:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.stages", "--one", stage], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            results[stage] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
        else:
            results[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(stage, json.dumps(results[stage]))
    print(f"wrote {write_result('stages', results, threads='2 (stage defaults)')}")


if __name__ == "__main__":
    main()
