"""Embedded LLM under concurrent sessions: which way of sharing llama.cpp is fastest.

Each simulated session sends ``--turns`` chat requests one after another (a short
system prompt, a short question, ``--max-tokens``), all sessions at once, and the
bench records per request the time to the first text (what delays the agent's
first audio) and to the end of the reply. Strategies:

- ``queue``: one server with ``--threads`` threads; the client's fair queue sends
  one request at a time (the server's default);
- ``instances``: ``--instances`` servers with ``--threads`` threads each, session
  ``n`` on server ``n % instances``, each server's requests queued fairly;
- ``queue-wide``: one server with twice ``--threads`` threads, queued;
- ``slots``: llama.cpp's ``llama-server`` (scripts/build_llama_server.sh) with
  ``--slots`` parallel slots and ``--threads`` threads, that many requests sent at
  once (the server's default where the binary is built).

The first three run llama-cpp-python's server, which generates one reply at a time.

Nothing else runs meanwhile, so the figures are the LLM's share only; on the real
server STT and TTS compete for the same cores. Reports figures; never fails on timing.

    .venv/bin/python -m bench.embedded_llm --sessions 2 4 --turns 3
    .venv/bin/python -m bench.embedded_llm --sessions 4 --strategies queue slots
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from typing import Any

from bench.common import percentiles, write_result
from voice.llm import ChatClient, LlmOptions, TextDelta
from voice.llm.embedded import LLAMA_SERVER, EmbeddedLlamaServer, resolve_gguf

SYSTEM = "You are a helpful voice assistant. Answer in one or two short sentences."
ASKED = (
    "What's the weather like?",
    "Tell me something about the moon.",
    "How do I boil an egg?",
    "Name three colours.",
)


async def one_request(client: ChatClient, session: int, turn: int, max_tokens: int,
                      out: dict[str, list[float]]) -> None:
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": ASKED[(session + turn) % len(ASKED)]}]
    start = time.monotonic()
    first: float | None = None
    async for event in client.stream(messages, max_tokens=max_tokens, temperature=0.0,
                                     queue_key=session):
        if first is None and isinstance(event, TextDelta):
            first = time.monotonic()
    end = time.monotonic()
    out["first_text_ms"].append(1000 * ((first or end) - start))
    out["reply_ms"].append(1000 * (end - start))


async def run(strategy: str, sessions: int, turns: int, threads: int, instances: int,
              max_tokens: int, slots: int) -> dict[str, Any]:
    count = instances if strategy == "instances" else 1
    per_server = threads * 2 if strategy == "queue-wide" else threads
    model = resolve_gguf("smollm2")
    binary = LLAMA_SERVER if strategy == "slots" else None
    if binary is not None and not binary.is_file():
        raise SystemExit(f"{binary} is not built: run scripts/build_llama_server.sh")
    servers = [EmbeddedLlamaServer(model, threads=per_server, binary=binary, slots=slots)
               for _ in range(count)]
    out: dict[str, list[float]] = {"first_text_ms": [], "reply_ms": []}
    async with contextlib.AsyncExitStack() as stack:
        for server in servers:
            await stack.enter_async_context(server)
        clients = [
            await stack.enter_async_context(ChatClient(LlmOptions(
                server.base_url, max_concurrent=server.slots, timeout_s=120,
                max_tokens=max_tokens)))
            for server in servers
        ]
        # Warm each server once (first prompt pays model load and cache setup).
        for client in clients:
            await one_request(client, 0, 0, 8, {"first_text_ms": [], "reply_ms": []})

        async def session(n: int) -> None:
            for turn in range(turns):
                await one_request(clients[n % count], n, turn, max_tokens, out)

        started = time.monotonic()
        await asyncio.gather(*(session(n) for n in range(sessions)))
        wall = time.monotonic() - started
    return {
        "strategy": strategy, "sessions": sessions, "servers": count,
        "slots": servers[0].slots,
        "threads_per_server": per_server, "wall_s": round(wall, 2),
        "first_text_ms": percentiles(out["first_text_ms"]),
        "reply_ms": percentiles(out["reply_ms"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--strategies", nargs="+", default=["queue", "instances", "queue-wide"])
    parser.add_argument("--out", default="embedded_llm")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = []
    for sessions in args.sessions:
        for strategy in args.strategies:
            result = asyncio.run(run(strategy, sessions, args.turns, args.threads,
                                     args.instances, args.max_tokens, args.slots))
            print(result, flush=True)
            results.append(result)
    path = write_result(args.out, {"runs": results}, load_average_before=load_before,
                        load_average_after=os.getloadavg(), turns=args.turns,
                        max_tokens=args.max_tokens)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
