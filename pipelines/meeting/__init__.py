"""Meetings in batch mode: a recording in, a speaker-labelled transcript and a summary out.

Modules: :mod:`~pipelines.meeting.document` (the transcript record and its renderings),
:mod:`~pipelines.meeting.align` (words to speakers, pure), :mod:`~pipelines.meeting.windows`
(where to cut long audio, pure), :mod:`~pipelines.meeting.pipeline` (the stages, async; progress in
:mod:`~pipelines.meeting.progress`),
:mod:`~pipelines.meeting.summary` and friends (structured summaries with citations).
"""

from pipelines.meeting.document import TranscriptDocument, TranscriptSegment
from pipelines.meeting.pipeline import MeetingOptions, MeetingPipeline, MeetingResult
from pipelines.meeting.progress import STAGE_WEIGHTS, Progress
from pipelines.meeting.summary import ActionItem, MeetingSummary, SummaryItem

__all__ = [
    "STAGE_WEIGHTS",
    "ActionItem",
    "MeetingOptions",
    "MeetingPipeline",
    "MeetingResult",
    "MeetingSummary",
    "Progress",
    "SummaryItem",
    "TranscriptDocument",
    "TranscriptSegment",
]
