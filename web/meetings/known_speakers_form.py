"""``known_speaker_names[]`` / ``known_speaker_references[]`` form fields (OpenAI's
diarized transcription), shared by the transcription and meeting uploads."""

from __future__ import annotations

from pipelines.meeting.meeting_jobs import SPEAKER_LIMIT
from voice.audio.references import reference_bytes
from web.api_errors import ApiError
from web.meetings.uploads import ReceivedForm


def known_speakers(form: ReceivedForm) -> tuple[list[str], list[bytes]]:
    """Names and their voice samples (audio bytes); 400 naming the field when malformed."""
    names = [n.strip() for n in form.getall("known_speaker_names[]")]
    references = form.getall("known_speaker_references[]")
    if len(names) != len(references):
        raise ApiError(
            400,
            "invalid_value",
            "give one known_speaker_references[] (a data URL) per known_speaker_names[]",
            param="known_speaker_references",
        )
    if not all(names) or len(set(names)) != len(names) or len(names) > SPEAKER_LIMIT:
        raise ApiError(
            400,
            "invalid_value",
            f"known_speaker_names[] must be unique, non-empty, at most {SPEAKER_LIMIT}",
            param="known_speaker_names",
        )
    samples = []
    for index, reference in enumerate(references):
        try:
            samples.append(reference_bytes(reference))
        except ValueError as exc:
            raise ApiError(
                400, "invalid_value", str(exc), param=f"known_speaker_references[{index}]"
            ) from None
    return names, samples
