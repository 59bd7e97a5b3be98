"""The ``language`` field of the transcription and meeting uploads, checked up front.

Whisper knows a fixed set of language codes; any other value made a
multilingual model fail in the middle of the work (a 500, or a meeting job that
failed later as ``internal_error``). It is refused here instead, naming the field.
"""

from __future__ import annotations

from faster_whisper.tokenizer import _LANGUAGE_CODES

from web.api_errors import ApiError

WHISPER_LANGUAGES = frozenset(_LANGUAGE_CODES)
"""ISO 639-1 codes (and ``haw``, ``yue``) that Whisper models accept."""


def check_language(raw: str | None, *, status: int = 400) -> str | None:
    """The language code of a form field (lower-cased; empty = None), or ``ApiError``
    (``status``, ``invalid_value``, param ``language``) when Whisper does not know it."""
    code = (raw or "").strip().lower()
    if not code:
        return None
    if code not in WHISPER_LANGUAGES:
        raise ApiError(
            status,
            "invalid_value",
            f"language must be an ISO 639-1 code Whisper knows, such as 'en' or 'de'; "
            f"got {code[:20]!r}",
            param="language",
        )
    return code
