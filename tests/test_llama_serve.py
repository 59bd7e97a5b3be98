"""The embedded llama.cpp server's conversation cache (``voice.llm.llama_serve``).

Two conversations take turns on one server, as two realtime sessions do. With the
cache, each request resumes its own conversation's saved state and evaluates only
its new turn, and its reply is the one the conversation gets when nothing comes
between its turns (greedy decoding; llama.cpp's numerics depend on what is evaluated
together, so the same tokens in other batches may decode differently).
"""

from __future__ import annotations

import re
from pathlib import Path

import llama_cpp
import numpy as np

from voice.llm import ChatClient, LlmOptions, TextDelta
from voice.llm.embedded import EmbeddedLlamaServer, resolve_gguf
from voice.llm.llama_serve import ConversationCache

SYSTEM = "You are a helpful voice assistant. Answer briefly in plain spoken sentences."
TURNS = (
    ("a", "Tell me about the history of the bicycle in a few sentences."),
    ("b", "What is the tallest mountain on each continent?"),
    ("a", "And why did it become popular?"),
    ("b", "Which one is the hardest to climb?"),
)
EVALUATED = re.compile(rb"(\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")


async def take_turns(
    cache_mb: int, log: Path, turns: tuple[tuple[str, str], ...]
) -> dict[str, list[str]]:
    """Each conversation's replies to ``turns`` (in that order), on a server with ``cache_mb``."""
    server = EmbeddedLlamaServer(resolve_gguf("smollm2"), threads=1, context=2048,
                                 cache_mb=cache_mb, log_path=log)
    conversations: dict[str, list[dict[str, str]]] = {
        "a": [{"role": "system", "content": SYSTEM}],
        "b": [{"role": "system", "content": SYSTEM}],
    }
    replies: dict[str, list[str]] = {"a": [], "b": []}
    await server.start(timeout_s=120)
    try:
        options = LlmOptions(base_url=server.base_url, model="m", temperature=0.0,
                             max_tokens=40, timeout_s=60)
        async with ChatClient(options) as client:
            for who, text in turns:
                messages = conversations[who]
                messages.append({"role": "user", "content": text})
                reply = "".join([e.text async for e in client.stream(messages)
                                 if isinstance(e, TextDelta)])
                messages.append({"role": "assistant", "content": reply})
                replies[who].append(reply)
    finally:
        await server.stop()
    return replies


async def test_conversations_taking_turns_resume_their_own_state(tmp_path: Path) -> None:
    cached_log, plain_log = tmp_path / "cached.log", tmp_path / "plain.log"
    cached = await take_turns(64, cached_log, TURNS)
    one_by_one = tuple(sorted(TURNS, key=lambda turn: turn[0]))  # a, a, b, b
    alone = await take_turns(0, tmp_path / "alone.log", one_by_one)
    assert cached == alone and all(r.strip() for r in cached["a"] + cached["b"]), (cached, alone)
    plain = await take_turns(0, plain_log, TURNS)
    assert all(r.strip() for r in plain["a"] + plain["b"]), plain
    # (prefix reused, tokens evaluated) of each request after the first
    with_cache = [tuple(map(int, m)) for m in EVALUATED.findall(cached_log.read_bytes())]
    without = [tuple(map(int, m)) for m in EVALUATED.findall(plain_log.read_bytes())]
    # Each conversation's second turn: with the cache only the new user message is
    # evaluated (~20 tokens); without it, everything after the shared system prompt
    # (the other conversation's turn was evaluated in between).
    assert len(with_cache) == len(without) == 3, (with_cache, without)
    for (kept, fresh), (_, again) in zip(with_cache[1:], without[1:], strict=True):
        assert fresh <= 30 < again and kept > again, (with_cache, without)


def test_the_cache_evicts_the_oldest_states_beyond_its_capacity() -> None:
    cache = ConversationCache(capacity_bytes=2500)  # two states of 1000 bytes

    def state(tokens: list[int]) -> llama_cpp.LlamaState:
        return llama_cpp.LlamaState(
            input_ids=np.array(tokens, dtype=np.intc), scores=np.empty((0, 0), np.single),
            n_tokens=len(tokens), llama_state=bytes(1000), llama_state_size=1000, seed=0)

    cache[[1, 2]] = state([1, 2])
    cache[[1, 2, 3]] = state([1, 2, 3])
    assert cache[[1, 2, 3, 4]].n_tokens == 3  # the longest shared prefix wins
    cache[[7, 8]] = state([7, 8])  # 3000 bytes > 2500: the least recently used goes
    assert cache[[1, 2, 9]].n_tokens == 3 and [7, 8] in cache
    assert len(cache.cache_state) == 2
    assert cache.cache_size == 2000
    assert cache.cache_size == 2000
