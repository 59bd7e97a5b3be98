"""``python -m voice.llm.llama_serve``: llama-cpp-python's OpenAI-compatible server
(same arguments as ``python -m llama_cpp.server``) whose ``--cache`` keeps one model
state per conversation, compactly.

llama.cpp holds one evaluated prompt. With several sessions taking turns, each
request would re-evaluate its whole history after the system prompt, which on a
CPU costs most of the time to the first token. With ``--cache true`` the server
saves the state after every completed reply, keyed by its tokens, and a request
starts from the saved state sharing its longest prefix: only the new turn is
evaluated. llama-cpp-python's own save and restore copy and scan up to ``n_batch``
rows of logits (~100 MB for a 49k-token vocabulary) per entry, uncounted against
``--cache_size`` and slower than the evaluation they save; :func:`snapshot` and
:func:`restore` keep the tokens and KV cache only, and :class:`ConversationCache`
counts every byte it keeps.
"""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np
from llama_cpp.llama_cache import LlamaRAMCache


class ConversationCache(LlamaRAMCache):
    """Saved model states, oldest evicted first once their bytes pass ``capacity_bytes``."""

    @property
    def cache_size(self) -> int:
        return sum(
            int(state.llama_state_size) + int(state.scores.nbytes)
            for state in self.cache_state.values()
        )


def snapshot(model: llama_cpp.Llama) -> llama_cpp.LlamaState:
    """The state of ``model``: its tokens and KV cache, no logits.

    Replaces ``Llama.save_state``, which also copies up to n_batch rows of logits
    (~100 MB for a 49k-token vocabulary) that :func:`restore` never needs.
    """
    ctx = model._ctx.ctx
    size = int(llama_cpp.llama_state_get_size(ctx))
    buffer = (ctypes.c_uint8 * size)()
    written = int(llama_cpp.llama_state_get_data(ctx, buffer, size))
    if written > size:
        raise RuntimeError("failed to save a llama.cpp state")
    return llama_cpp.LlamaState(
        input_ids=model.input_ids.copy(),
        scores=np.empty((0, 0), dtype=np.single),
        n_tokens=model.n_tokens,
        llama_state=ctypes.string_at(buffer, written),
        llama_state_size=written,
        seed=model._seed,
    )


def restore(model: llama_cpp.Llama, state: llama_cpp.LlamaState) -> None:
    """Resume ``model`` from a :func:`snapshot`: its tokens and KV cache.

    Replaces ``Llama.load_state``, which also rewrites and scans the whole logits
    buffer (n_batch x vocabulary floats: 100-500 ms on a small CPU, longer than the
    evaluation it saves). No logits are needed: a resumed request evaluates at least
    one token before it samples (the state is marked as needing evaluation).
    """
    model.input_ids = state.input_ids.copy()
    model.n_tokens = state.n_tokens
    model._requires_eval = True
    model._seed = state.seed
    size = int(state.llama_state_size)
    data = (ctypes.c_uint8 * size).from_buffer_copy(state.llama_state)
    if llama_cpp.llama_state_set_data(model._ctx.ctx, data, size) != size:
        raise RuntimeError("failed to restore a saved llama.cpp state")


def main() -> None:
    """Run the server with :class:`ConversationCache` as its RAM cache."""
    llama_cpp.LlamaRAMCache = ConversationCache  # type: ignore[misc]  # what the server builds
    llama_cpp.Llama.save_state = snapshot  # type: ignore[method-assign,assignment]
    llama_cpp.Llama.load_state = restore  # type: ignore[method-assign,assignment]
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
