"""The LLM a server or command talks to: the configured endpoint, or the embedded
llama.cpp server started for the purpose (and stopped with it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from voice.llm import ChatClient, LlmOptions
from voice.llm.embedded import EmbeddedLlamaServer, resolve_gguf, resolve_server
from voice.settings import Settings


def embedded_server(
    settings: Settings, threads: int | None = None, batch_threads: int = 0
) -> EmbeddedLlamaServer:
    """The embedded llama.cpp server described by the ``llm_embedded_*`` settings (not
    started); ``threads``: the CPU budget's share (default: the setting, 0 = 1);
    ``batch_threads``: for prompt evaluation (0 = ``threads``)."""
    return EmbeddedLlamaServer(
        resolve_gguf(settings.llm_embedded_model),
        binary=resolve_server(settings.llm_embedded_server),
        slots=settings.llm_embedded_slots,
        threads=threads or settings.llm_embedded_threads or 1,
        batch_threads=batch_threads,
        context=settings.llm_embedded_context,
        cache_mb=settings.llm_embedded_cache_mb,
        chat_format=settings.llm_embedded_chat_format,
    )


def llm_description(settings: Settings, embedded: EmbeddedLlamaServer | None = None) -> str:
    """What answers as the LLM, for logs and bench results: the endpoint's URL, or the
    embedded program (``llama-server`` with its slots, or llama-cpp-python's server).
    ``embedded``: the server already running, described as started (a binary deleted or
    built since changes nothing); without it the settings are resolved as a start would."""
    if settings.llm_base_url is not None:
        return settings.llm_base_url
    if embedded is not None:
        binary, slots = embedded.binary, embedded.slots
    else:
        binary, slots = resolve_server(settings.llm_embedded_server), settings.llm_embedded_slots
    if binary is None:
        return "embedded llama_cpp.server"
    return f"embedded llama-server ({slots} slots)"


async def start_llm(
    settings: Settings, threads: int | None = None, batch_threads: int = 0
) -> tuple[ChatClient, EmbeddedLlamaServer | None]:
    """A chat client for ``llm_base_url``, or for an embedded server started when none is set.

    The client sends the embedded server as many requests at once as it has slots
    (one for llama-cpp-python's) and queues the rest fairly. The caller owns both: release
    them with :func:`close_llm`.
    """
    embedded: EmbeddedLlamaServer | None = None
    base_url = settings.llm_base_url
    max_concurrent: int | None = None
    if base_url is None:
        embedded = embedded_server(settings, threads, batch_threads)
        await embedded.start()
        base_url, max_concurrent = embedded.base_url, embedded.slots
    options = LlmOptions.from_settings(settings, base_url=base_url, max_concurrent=max_concurrent)
    if embedded is not None:  # llama.cpp's grammar forces a call only for a named function
        # and its threads run on this machine's cores (counted while it answers)
        options = replace(options, named_tool_choice_only=True, local_threads=embedded.threads)
    return ChatClient(options), embedded


async def close_llm(client: ChatClient, embedded: EmbeddedLlamaServer | None) -> None:
    """Close the client and stop the embedded server, if any."""
    await client.aclose()
    if embedded is not None:
        await embedded.stop()


@contextlib.asynccontextmanager
async def open_llm(
    settings: Settings,
) -> AsyncIterator[tuple[ChatClient, EmbeddedLlamaServer | None]]:
    """:func:`start_llm` for the duration of a block (released also when cancelled)."""
    client, embedded = await start_llm(settings)
    try:
        yield client, embedded
    finally:
        await close_llm(client, embedded)
