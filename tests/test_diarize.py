"""Diarization stage: DER on every reference-annotated clip, speaker counts,
speaker-count options, label order, RTTM/UEM, and the pure pieces (clustering,
stitching).

DER is pyannote.metrics' ``DiarizationErrorRate`` with a **0.25 s collar** (the
issue's scoring) and overlapped speech scored, restricted to the clip's UEM
where it has one (the AMI excerpts: 0-30 s), else the whole clip. Only the kit
pipeline (``diarize_backend=pyannote``, the choice for room recordings; senko stays the
default for its cpWER on close-talk meetings, tests/test_meeting.py) is scored here,
loaded once and run once per clip per module; ``bench/diarize.py`` prints the
table for both backends at collars 0 and 0.25 s.

Targets: mean DER over the AMI excerpts <= 0.30 and every speaker count within
one of the reference. Per clip the DER must also stay within what was measured
(``MEASURED``, 2-core CPU) + ``CLIP_MARGIN``; a clip that misses a target is a
strict xfail naming its measured value, so it fails the run once it passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from tests.conftest import DATA_DIR, data_path, load_clip
from voice.diarize import (
    DiarizeOptions,
    Diarizer,
    SpeakerTurn,
    format_rttm,
    format_uem,
    make_diarizer,
    parse_rttm,
    parse_uem,
    read_rttm,
    read_uem,
    relabel_in_order,
    write_rttm,
)
from voice.diarize.clustering import assign_per_window, cluster
from voice.diarize.kit_pipeline import KitOptions
from voice.diarize.linkage import average_linkage
from voice.diarize.overlap_assign import assign_by_overlap, shared_frames
from voice.diarize.reconstruct import cluster_scores, frame_activity, to_turns
from voice.diarize.senko_backend import diarize_in_parts, merge_speakers
from voice.diarize.senko_embeddings import BATCH, GROUP, embed_in_parts
from voice.diarize.speech_gate import fits, heard_regions, keep_heard
from voice.settings import Settings
from voice.vad.base import FrameProbabilities
from voice.vad.lanes import score_signal
from voice.vad.silero import SileroClassifier

COLLAR_S = 0.25

CLIPS = [
    "pyannote-audio/sample.wav",
    "pyannote-audio/dev00.wav",
    "pyannote-audio/dev01.wav",
    "pyannote-audio/trn00.wav",
    "pyannote-audio/trn01.wav",
    "pyannote-audio/trn02.wav",
    "pyannote-audio/trn03.wav",
    "pyannote-audio/trn04.wav",
    "pyannote-audio/trn05.wav",
    "pyannote-audio/trn06.wav",
    "faster-whisper/stereo_diarization.wav",  # the shared copy is already the mono mixdown
    "assembled/assembled_meeting.wav",  # not in the manifest, but has an exact RTTM
]
AMI = [clip for clip in CLIPS if "/dev" in clip or "/trn" in clip]
TARGET_AMI_MEAN_DER = 0.30

# Kit pipeline DER at collar 0.25 s, 2-core CPU (bench/diarize.py); bound = measured + margin.
MEASURED: dict[str, float] = {
    "pyannote-audio/sample.wav": 0.027,
    "pyannote-audio/dev00.wav": 0.318,  # 0.254 when every window was embedded (see below)
    "pyannote-audio/dev01.wav": 0.443,  # 0.585 before turns were kept to heard speech
    "pyannote-audio/trn00.wav": 0.420,
    "pyannote-audio/trn01.wav": 0.884,
    "pyannote-audio/trn02.wav": 0.017,
    "pyannote-audio/trn03.wav": 0.000,
    "pyannote-audio/trn04.wav": 0.389,
    "pyannote-audio/trn05.wav": 0.065,
    "pyannote-audio/trn06.wav": 0.094,
    "faster-whisper/stereo_diarization.wav": 0.038,
    "assembled/assembled_meeting.wav": 0.180,
}
MEASURED_AMI_MEAN = 0.293
"""Since only every other window is embedded (``KitOptions.embed_every``, half the CAM++
cost), dev00 rose from 0.254 to 0.319 (its second voice was found by one window's
embedding, now taken from its neighbours by overlap) and trn06 fell from 0.137 to 0.094;
the AMI mean went from 0.306 to 0.309, the meeting bench's long recording from 0.263 to
0.265. Keeping turns to where Silero hears any speech (``KitOptions.heard_floor``) took
it to 0.293: dev01 0.585 -> 0.443 (2 s of room noise had been a third speaker), trn00
0.427 -> 0.420, no clip worse. Clustering threshold (0.4-0.7), min-cluster size (1-3),
``min_share`` and a stricter share for overlap moved the mean by under 0.005; longer
embeddings or every window embedded reached 0.289-0.301 only with assembled_meeting.wav
over its bound or trn06's count off by two."""
CLIP_MARGIN = 0.05
KEPT_BOUND = {"pyannote-audio/sample.wav": 0.05, "assembled/assembled_meeting.wav": 0.20}
"""Upper bounds for the clips the issue says must not get worse (0.014 and 0.172 before
the far-field tuning; 0.027 and 0.180 now)."""
COUNT_MISSED: dict[str, str] = {
    "pyannote-audio/trn01.wav": "1/4: three of the four voices only overlap in the last 1.5 s "
    "(segmentation-3.0 hears no speech there) or say under 0.5 s",
    "pyannote-audio/trn05.wav": "1/4: one voice holds most of the 30 s; the others are "
    "merged into it (DER 0.066)",
}
"""Clips whose speaker count is more than one off (found/expected, and why)."""

# Outbound network use is recorded while this module runs (models must load offline).
_NETWORK: list[tuple[str, str]] = []
_RECORDING = [False]


def _audit(event: str, args: tuple[object, ...]) -> None:
    if not _RECORDING[0]:
        return
    if event == "socket.getaddrinfo":
        host = str(args[0])
    elif event == "socket.connect":
        address = args[1]
        host = str(address[0]) if isinstance(address, tuple) else "unix"
    else:
        return
    if host not in ("127.0.0.1", "::1", "localhost", "unix"):
        _NETWORK.append((event, host))


sys.addaudithook(_audit)


@pytest.fixture(scope="module", autouse=True)
def _record_network() -> Iterator[None]:
    _NETWORK.clear()
    _RECORDING[0] = True
    yield
    _RECORDING[0] = False


_RESULTS: dict[str, list[SpeakerTurn]] = {}


@pytest.fixture(scope="module")
def kit() -> Diarizer:
    return make_diarizer(Settings(diarize_backend="pyannote", diarize_device="cpu"))


def _run(diarizer: Diarizer, clip: str) -> list[SpeakerTurn]:
    """Turns of ``clip``, computed once per module."""
    if clip not in _RESULTS:
        _RESULTS[clip] = diarizer.diarize(load_clip(clip))
    return _RESULTS[clip]


def _annotation(turns: list[SpeakerTurn]) -> Annotation:
    annotation = Annotation()
    for index, turn in enumerate(turns):
        annotation[Segment(turn.start, turn.end), index] = turn.speaker
    return annotation


def _reference(clip: str) -> tuple[list[SpeakerTurn], Timeline]:
    wav = data_path(clip)
    (turns,) = read_rttm(wav.with_suffix(".rttm")).values()
    uem_path = wav.with_suffix(".uem")
    if uem_path.exists():
        (regions,) = read_uem(uem_path).values()
    else:
        regions = [(0.0, len(load_clip(clip)) / 16000)]
    return turns, Timeline([Segment(start, end) for start, end in regions])


def _score(clip: str, turns: list[SpeakerTurn]) -> dict[str, float]:
    reference, uem = _reference(clip)
    metric = DiarizationErrorRate(collar=COLLAR_S)
    detail = metric(_annotation(reference), _annotation(turns), uem=uem, detailed=True)
    total = detail["total"] or 1.0
    return {
        "der": detail["diarization error rate"],
        "miss": detail["missed detection"] / total,
        "fa": detail["false alarm"] / total,
        "conf": detail["confusion"] / total,
        "ref_spk": len({t.speaker for t in reference}),
        "spk": len({t.speaker for t in turns}),
    }


def test_clip_list_covers_every_annotated_diar_clip() -> None:
    annotated = {
        record["path"]
        for record in map(json.loads, data_path("manifest.jsonl").read_text().splitlines())
        if record["category"] == "diar"
        and (DATA_DIR / record["path"]).with_suffix(".rttm").exists()
    }
    assert annotated == set(CLIPS) - {"assembled/assembled_meeting.wav"}
    assert data_path("assembled/assembled_meeting.rttm").exists()
    assert set(MEASURED) == set(CLIPS)


@pytest.mark.slow
@pytest.mark.parametrize("clip", CLIPS)
def test_der_per_clip(clip: str, kit: Diarizer) -> None:
    """DER within its measured value + margin and never above 1.0 (returning nothing
    scores exactly 1.0); sample.wav and assembled_meeting.wav keep what they reached."""
    score = _score(clip, _run(kit, clip))
    bound = KEPT_BOUND.get(clip, min(MEASURED[clip] + CLIP_MARGIN, 1.0))
    assert score["der"] <= bound, f"{clip}: {score}"


def _count_cases() -> list[object]:
    return [
        pytest.param(
            clip,
            marks=[pytest.mark.xfail(strict=True, reason=COUNT_MISSED[clip])]
            if clip in COUNT_MISSED
            else [],
            id=clip,
        )
        for clip in CLIPS
    ]


@pytest.mark.slow
@pytest.mark.parametrize("clip", _count_cases())
def test_speaker_count_within_one(clip: str, kit: Diarizer) -> None:
    score = _score(clip, _run(kit, clip))
    assert abs(score["spk"] - score["ref_spk"]) <= 1, f"{clip}: {score}"


@pytest.mark.slow
@pytest.mark.xfail(
    MEASURED_AMI_MEAN > TARGET_AMI_MEAN_DER,
    strict=True,
    reason=f"AMI mean DER measured {MEASURED_AMI_MEAN} (target {TARGET_AMI_MEAN_DER})",
)
def test_ami_mean_der_meets_target_and_table(
    kit: Diarizer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prints the per-clip table; the mean DER over the AMI excerpts meets the target."""
    lines = [
        f"\nkit pipeline (collar {COLLAR_S} s)",
        f"{'clip':40} {'DER':>6} {'miss':>6} {'FA':>6} {'conf':>6} spk",
    ]
    ami = []
    for clip in CLIPS:
        s = _score(clip, _run(kit, clip))
        if clip in AMI:
            ami.append(s["der"])
        lines.append(
            f"{clip:40} {s['der']:6.3f} {s['miss']:6.3f} {s['fa']:6.3f} {s['conf']:6.3f} "
            f"{s['spk']}/{s['ref_spk']}"
        )
    mean = float(np.mean(ami))
    lines.append(f"{'AMI mean':40} {mean:6.3f}")
    with capsys.disabled():
        print("\n".join(lines))
    assert mean <= TARGET_AMI_MEAN_DER


@pytest.mark.slow
def test_quiet_far_field_speech_is_not_thrown_away(kit: Diarizer) -> None:
    """trn01 holds 5.8 s of quiet far-field speech in 30 s: some of it must come back."""
    assert _run(kit, "pyannote-audio/trn01.wav")


@pytest.mark.slow
def test_num_speakers_two_on_sample(kit: Diarizer) -> None:
    turns = kit.diarize(load_clip("pyannote-audio/sample.wav"), DiarizeOptions(num_speakers=2))
    assert {t.speaker for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    assert _score("pyannote-audio/sample.wav", turns)["der"] <= 0.05


@pytest.mark.slow
def test_max_speakers_caps_the_count(kit: Diarizer) -> None:
    free = _run(kit, "pyannote-audio/sample.wav")
    assert len({t.speaker for t in free}) == 2
    capped = kit.diarize(load_clip("pyannote-audio/sample.wav"), DiarizeOptions(max_speakers=1))
    assert {t.speaker for t in capped} == {"SPEAKER_00"}


@pytest.mark.slow
def test_labels_in_order_of_first_appearance(kit: Diarizer) -> None:
    turns = _run(kit, "assembled/assembled_meeting.wav")
    starts = [t.start for t in turns]
    assert starts == sorted(starts)
    first_seen = list(dict.fromkeys(t.speaker for t in turns))
    assert first_seen == [f"SPEAKER_{i:02d}" for i in range(len(first_seen))]
    assert all(0.0 <= t.start < t.end <= 64.5 for t in turns)


@pytest.mark.slow
def test_silence_gives_no_turns(kit: Diarizer) -> None:
    assert kit.diarize(np.zeros(16000 * 3, dtype=np.float32)) == []


@pytest.mark.slow
def test_no_network_while_loading_and_running(kit: Diarizer) -> None:
    """Both backends load and run offline (senko: the other backend, smoke-tested here)."""
    senko = make_diarizer(Settings(diarize_backend="senko", diarize_device="cpu"))
    audio = load_clip("faster-whisper/stereo_diarization.wav")
    assert senko.diarize(audio) and kit.diarize(audio)
    assert _NETWORK == []


def test_make_diarizer_rejects_a_directory_without_pipeline(tmp_path: Path) -> None:
    settings = Settings(diarize_backend="pyannote", diarize_pyannote_pipeline=tmp_path)
    with pytest.raises(ValueError, match="config.yaml"):
        make_diarizer(settings)


def test_options_validation() -> None:
    assert DiarizeOptions().bounds == (1, None)
    assert DiarizeOptions(num_speakers=3).bounds == (3, 3)
    assert DiarizeOptions(min_speakers=2, max_speakers=4).bounds == (2, 4)
    with pytest.raises(ValueError, match="either"):
        DiarizeOptions(num_speakers=2, max_speakers=3)
    with pytest.raises(ValueError, match="exceeds"):
        DiarizeOptions(min_speakers=3, max_speakers=2)
    with pytest.raises(ValueError, match="at least 1"):
        DiarizeOptions(num_speakers=0)


def test_relabel_in_order_of_first_appearance() -> None:
    turns = [SpeakerTurn(5.0, 6.0, "7"), SpeakerTurn(1.0, 2.0, "3"), SpeakerTurn(3.0, 4.0, "7")]
    assert relabel_in_order(turns) == [
        SpeakerTurn(1.0, 2.0, "SPEAKER_00"),
        SpeakerTurn(3.0, 4.0, "SPEAKER_01"),
        SpeakerTurn(5.0, 6.0, "SPEAKER_01"),
    ]


def test_rttm_round_trip(tmp_path: Path) -> None:
    (reference,) = read_rttm(data_path("pyannote-audio/trn00.rttm")).values()
    assert "MÉO069" in {t.speaker for t in reference}
    path = tmp_path / "trn00.rttm"
    write_rttm(path, reference, "trn00")
    assert read_rttm(path) == {"trn00": reference}
    turns = [SpeakerTurn(0.5, 1.25, "SPEAKER_01"), SpeakerTurn(0.0, 2.0, "SPEAKER_00")]
    text = format_rttm(turns, "meeting")
    assert text.splitlines()[0] == "SPEAKER meeting 1 0.000 2.000 <NA> <NA> SPEAKER_00 <NA> <NA>"
    assert parse_rttm(";; comment\n" + text) == {"meeting": sorted(turns, key=lambda t: t.start)}
    with pytest.raises(ValueError):
        format_rttm([SpeakerTurn(0.0, 1.0, "two words")], "x")


def test_uem_round_trip() -> None:
    (regions,) = read_uem(data_path("pyannote-audio/dev00.uem")).values()
    assert regions == [(0.0, 30.0)]
    assert parse_uem(format_uem([(4.0, 5.5), (0.0, 2.0)], "a")) == {"a": [(0.0, 2.0), (4.0, 5.5)]}


def test_clustering_finds_separated_speakers_and_obeys_bounds() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3]
    points = np.repeat(centres, 10, axis=0) + 0.15 * rng.standard_normal((30, 8))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    labels = cluster(points)
    assert len(set(labels)) == 3
    assert all(len(set(labels[i * 10 : (i + 1) * 10])) == 1 for i in range(3))
    assert len(set(cluster(points, bounds=(1, 2)))) == 2
    assert len(set(cluster(points, bounds=(5, 5)))) == 5
    assert len(set(cluster(points[:2], bounds=(4, None)))) == 2


def test_average_linkage_matches_scipy_without_groups() -> None:
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(1)
    points = rng.standard_normal((40, 8)) + 2 * np.repeat(rng.standard_normal((4, 8)), 10, axis=0)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    reference = linkage(points, method="average", metric="cosine")
    tree = average_linkage(points)
    assert np.allclose(np.sort(reference[:, 2]), tree.heights)
    for k in (1, 2, 4, 7):
        expected = fcluster(reference, k, criterion="maxclust")
        assert len(set(zip(expected, tree.labels(k), strict=True))) == len(set(expected)) == k


def test_cannot_link_keeps_one_windows_speakers_apart() -> None:
    # two close voices heard together in windows 0 and 1, a third far away
    points = np.array([[1.0, 0.0, 0.0], [0.95, 0.31, 0.0], [1.0, 0.02, 0.0], [0.0, 0.0, 1.0]])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    windows = np.array([0, 0, 1, 2])
    assert len(set(cluster(points[:3]))) == 1
    labels = cluster(points, groups=windows)
    assert labels[0] != labels[1] and len(set(labels)) == 3
    forced = cluster(points, bounds=(1, 1), groups=windows)
    assert set(forced) == {0}


def test_merge_speakers_joins_the_most_similar_pair() -> None:
    turns = [SpeakerTurn(0, 2, "a"), SpeakerTurn(2, 3, "b"), SpeakerTurn(3, 5, "c")]
    centroids = {"a": np.array([1.0, 0.0]), "b": np.array([0.9, 0.1]), "c": np.array([0.0, 1.0])}
    merged = merge_speakers(turns, centroids, 2)
    assert [t.speaker for t in merged] == ["a", "a", "c"]
    assert [t.speaker for t in merge_speakers(turns, centroids, 1)] == ["a", "a", "a"]
    assert merge_speakers(turns, centroids, 3) == turns


def test_assignment_gives_local_speakers_distinct_clusters() -> None:
    similarity = np.array([[[0.9, 0.1], [0.8, 0.2], [0.0, 0.0]]])
    valid = np.array([[True, True, False]])
    assert assign_per_window(similarity, valid).tolist() == [[0, 1, -1]]


def test_unembedded_windows_take_the_clusters_of_overlapping_speakers() -> None:
    # windows of 6 frames every 2 frames; window 1 is not embedded. Its local speaker 0
    # talks on the frames of window 0's speaker 1 (cluster 0), its speaker 2 on those of
    # window 2's speaker 0 (cluster 1); its speaker 1 is heard by no other window.
    activity = np.zeros((3, 6, 3), dtype=np.float32)
    activity[0, 2:4, 1] = 1  # global frames 2-3
    activity[1, 0:2, 0] = 1  # global frames 2-3
    activity[1, 2:4, 2] = 1  # global frames 4-5
    activity[1, 4:6, 1] = 1  # global frames 6-7: window 2 hears nobody there
    activity[2, 0:2, 0] = 1  # global frames 4-5
    offsets = np.array([0, 2, 4])
    hard = np.array([[-1, 0, -1], [-1, -1, -1], [1, -1, -1]])
    known = hard >= 0
    near, both = shared_frames(activity, offsets, 1, known)
    assert near.tolist() == [0, 2]
    assert both[0, 0, 1] == 2 and both[2, 1, 0] == 2 and both[1].sum() == 0
    pending = np.array([[False] * 3, [True] * 3, [False] * 3])
    assigned = assign_by_overlap(activity, offsets, hard, pending, 2, min_frames=1)
    assert assigned.tolist() == [[-1, 0, -1], [0, -1, 1], [1, -1, -1]]
    # a cluster already used in the window is not given to a second local speaker
    taken = hard.copy()
    taken[1, 1] = 0
    one = assign_by_overlap(activity, offsets, taken, pending & (np.arange(3) != 1), 2, 1)
    assert one[1].tolist() == [-1, 0, 1]
    # too few shared frames: left unassigned
    assert (assign_by_overlap(activity, offsets, hard, pending, 2, min_frames=3)[1] == -1).all()
    with pytest.raises(ValueError, match="embed_every"):
        KitOptions(embed_every=0)


def test_stitching_windows_into_turns() -> None:
    # two windows of 4 frames, offset 2 frames; local speaker 0 -> cluster 1, 1 -> cluster 0
    activity = np.zeros((2, 4, 3), dtype=np.float32)
    activity[0, :, 0] = 1
    activity[1, :2, 0] = 1
    activity[1, 2:, 1] = 1
    hard = np.array([[1, -1, -1], [1, 0, -1]])
    binary = frame_activity(activity, np.array([0, 2]), hard, 2, 6)
    assert binary.tolist() == [[0, 1], [0, 1], [0, 1], [0, 1], [1, 0], [1, 0]]
    # frames 2-3: only one of the two windows covering them hears a speaker
    quiet = activity.copy()
    quiet[1, :2, 0] = 0
    assert frame_activity(quiet, np.array([0, 2]), hard, 2, 6, min_share=0.6)[2:4].sum() == 0
    assert frame_activity(quiet, np.array([0, 2]), hard, 2, 6, min_share=0.5)[2:4].sum() == 2
    with pytest.raises(ValueError, match="min_share"):
        frame_activity(quiet, np.array([0, 2]), hard, 2, 6, min_share=0.0)
    turns = to_turns(binary, 1.0, 1.0, end_s=5.5)
    assert turns == [SpeakerTurn(0.0, 4.5, "1"), SpeakerTurn(4.5, 5.5, "0")]


def test_stitching_marks_the_strongest_clusters_as_a_full_ranking_would() -> None:
    """Each frame's ``count`` strongest clusters (ties to the lower id), picked one rank at
    a time instead of ranking every cluster of every frame (an int64 array of frames x
    clusters): the same frames as a stable argsort, on random windows with ties."""
    rng = np.random.default_rng(7)
    for _ in range(30):
        windows, frames, clusters = int(rng.integers(1, 8)), 12, int(rng.integers(1, 6))
        activity = (rng.random((windows, frames, 3)) < 0.4).astype(np.float32)
        hard = rng.integers(-1, clusters, (windows, 3))
        offsets = np.sort(rng.integers(0, 20, windows))
        length = int(offsets.max()) + frames
        ours = frame_activity(activity, offsets, hard, clusters, length, 0.5)
        score, count = cluster_scores(activity, offsets, hard, clusters, length, 0.5)
        ranked = np.argsort(-score, axis=1, kind="stable")
        expected = np.zeros((length, clusters), dtype=np.uint8)
        for rank in range(clusters):
            rows = np.flatnonzero(count > rank)
            cols = ranked[rows, rank]
            keep = score[rows, cols] > 0
            expected[rows[keep], cols[keep]] = 1
        assert np.array_equal(ours, expected)


def test_fbank_puts_a_tone_in_the_right_mel_bin() -> None:
    import torch

    from voice.diarize.fbank import KaldiFbank, mel_banks

    t = np.arange(16000) / 16000
    feats = KaldiFbank().features(torch.from_numpy(np.sin(2 * np.pi * 1000 * t).astype(np.float32)))
    assert feats.shape == (98, 80)
    peak = int(feats.mean(dim=0).argmax())
    assert int(mel_banks()[:, 1000 * 512 // 16000].argmax()) in (peak - 1, peak, peak + 1)


def test_fbank_blocks_give_the_whole_signals_rows_and_keep_few_blocks() -> None:
    """The kit's features of a long recording are made a block at a time as the windows
    ask for them: the rows are those of the whole signal's fbank, across block edges, and
    rows asked in time order keep at most the blocks they span."""
    import torch

    from voice.diarize.fbank import FbankBlocks, KaldiFbank

    audio = load_clip("pyannote-audio/sample.wav")[: 16000 * 20]
    fbank = KaldiFbank()
    whole = fbank.features(torch.from_numpy(audio))
    blocks = FbankBlocks(fbank, audio, block_frames=300)
    assert blocks.num_frames == whole.shape[0]
    for start in range(0, whole.shape[0] - 250, 170):  # windows sliding over block edges
        rows = np.arange(start, start + 250)[::3]
        assert torch.equal(blocks.rows(rows), whole[torch.from_numpy(rows)])
        assert len(blocks._blocks) <= 2
    last = np.array([whole.shape[0] - 1])
    assert torch.equal(blocks.rows(last), whole[-1:])


@pytest.mark.slow
def test_embedder_tells_speakers_apart() -> None:
    from voice.diarize import make_embedder

    embedder = make_embedder(Settings(diarize_device="cpu"))
    clips = {
        speaker: [embedder.embed(load_clip(f"speechbrain/{speaker}_snt{i}.wav")) for i in (1, 2, 3)]
        for speaker in ("spk1", "spk2")
    }
    vectors = clips["spk1"] + clips["spk2"]
    assert all(
        v.shape == (embedder.dimension,) and abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors
    )
    same = [
        float(a @ b)
        for group in clips.values()
        for i, a in enumerate(group)
        for b in group[i + 1 :]
    ]
    different = [float(a @ b) for a in clips["spk1"] for b in clips["spk2"]]
    assert min(same) > 0.55 and max(different) < 0.5, (same, different)


@pytest.fixture(scope="module")
def senko() -> Iterator[Diarizer]:
    """senko on the CPU, built with torch at one thread (as the server's CPU budget
    sets it on two cores); torch's count is restored afterwards."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield make_diarizer(Settings(diarize_backend="senko", diarize_device="cpu"))
    finally:
        torch.set_num_threads(saved)


@pytest.mark.slow
def test_senko_keeps_the_thread_budget_and_senkos_embeddings(senko: Diarizer) -> None:
    """senko's constructor sets torch to every core; ours puts the budget back. The
    sub-segment embeddings, computed a few at a time, are exactly senko's own (64)."""
    import senko as senko_package
    import torch

    assert torch.get_num_threads() == 1
    inner = senko._senko  # type: ignore[attr-defined]
    audio = load_clip("pyannote-audio/sample.wav")
    subsegments = inner._generate_subsegments(inner._perform_vad(audio), None)
    features, frames, offsets, dim = inner._extract_fbank_features(audio, subsegments)
    assert len(subsegments) > 2 * BATCH  # several batches of ours
    ours = inner._generate_embeddings(features, frames, offsets, dim)
    theirs = senko_package.Diarizer._generate_embeddings(inner, features, frames, offsets, dim)
    assert ours.shape == theirs.shape and np.allclose(ours, theirs, atol=1e-5)
    assert torch.get_num_threads() == 1


@pytest.mark.slow
def test_senko_in_parts_gives_senkos_own_result_with_bounded_features(
    senko: Diarizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """senko extracts every sub-segment's features before embedding any (about 290 MB an
    hour of speech, held twice); ours go a part at a time. On the assembled meeting (66
    sub-segments), in parts of one group (64), the turns and centroids are those of ``diarize_samples``, and
    no extraction ever held more than a part."""
    inner = senko._senko  # type: ignore[attr-defined]
    audio = load_clip("assembled/assembled_meeting.wav")
    theirs = inner.diarize_samples(audio)
    sizes: list[int] = []
    extract = inner._extract_fbank_features

    def counted(samples: np.ndarray, subsegments: list[tuple[float, float]]) -> object:
        sizes.append(len(subsegments))
        return extract(samples, subsegments)

    monkeypatch.setattr(inner, "_extract_fbank_features", counted)
    ours = diarize_in_parts(inner, audio, part=GROUP)
    assert ours is not None and len(sizes) >= 2 and max(sizes) == GROUP
    assert ours["merged_segments"] == theirs["merged_segments"]
    assert ours["speaker_centroids"].keys() == theirs["speaker_centroids"].keys()
    for name, centroid in theirs["speaker_centroids"].items():
        assert np.allclose(ours["speaker_centroids"][name], centroid, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 64"):
        embed_in_parts(inner, audio, [(0.0, 1.5)], part=100)
    assert diarize_in_parts(inner, np.zeros(16000 * 5, np.float32)) is None


@pytest.mark.slow
def test_senko_replays_the_callers_silero_probabilities(senko: Diarizer) -> None:
    """The meeting pipeline hands senko the probabilities its own Silero pass already
    gave (decode stage): the turns are exactly those of senko's own VAD pass."""
    audio = load_clip("faster-whisper/stereo_diarization.wav")  # 5 s: one speaker for senko
    speech = score_signal(SileroClassifier(), audio)
    own = senko.diarize(audio)
    assert own
    assert senko.diarize(audio, speech=speech) == own
    silent = replace(speech, values=np.zeros_like(speech.values))
    assert senko.diarize(audio, speech=silent) == []  # replayed, not recomputed
    # scores of another signal, or of another model, are not used
    assert senko.diarize(audio, speech=replace(silent, values=silent.values[:-1])) == own
    assert senko.diarize(audio, speech=replace(silent, model="webrtc")) == own


def test_senko_leaves_the_process_streams_alone(
    senko: Diarizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """senko swapped sys.stdout/sys.stderr for /dev/null around every clustering, process
    wide and without a lock, closing what it found on the way out: a CI worker whose test
    server diarized while pytest switched its capture lost its stream for every later
    test. The streams seen while senko clusters must be the process's own, and open."""
    inner = senko._senko  # type: ignore[attr-defined]
    clustering = type(inner.spectral_cluster)
    real_call = clustering.__call__
    seen: list[tuple[object, object]] = []

    def spy(self: object, *args: object, **kwargs: object) -> object:
        seen.append((sys.stdout, sys.stderr))
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(clustering, "__call__", spy)
    before = (sys.stdout, sys.stderr)
    assert senko.diarize(load_clip("pyannote-audio/sample.wav"))
    assert seen == [before]
    assert (sys.stdout, sys.stderr) == before and not sys.stdout.closed


def test_senko_detects_speech_with_silero_on_every_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """With senko's own detector on CUDA (pyannote segmentation) bench.meeting's long
    recording scored DER (collar 0) 0.642 on an H100 against 0.507 with Silero on the CPU,
    and 0.655 with that detector built on the CPU by hand (see SENKO_VAD). Ours asks for
    Silero on the GPU too, so both devices segment alike and the pipeline's Silero pass is
    replayed (senko is stopped once asked)."""
    import senko as senko_package

    from voice.diarize.senko_backend import SenkoDiarizer

    class Asked(Exception):
        pass

    asked: list[dict[str, object]] = []

    def record(**kwargs: object) -> None:
        asked.append(kwargs)
        raise Asked

    monkeypatch.setattr(senko_package, "Diarizer", record)
    for device in ("cpu", "cuda"):
        with pytest.raises(Asked):
            SenkoDiarizer(device)  # type: ignore[arg-type]
    assert [(a["device"], a["vad"]) for a in asked] == [("cpu", "silero"), ("cuda", "silero")]


@pytest.mark.slow
def test_senko_imports_umap_only_when_a_long_recording_needs_it() -> None:
    """UMAP (with pynndescent, 65 MB resident) clusters only recordings past 20 minutes:
    building the diarizer leaves it unimported, and senko's clustering module still
    reaches umap's own class through the name it imported (a fresh interpreter)."""
    script = (
        "import sys\n"
        "from voice.diarize import make_diarizer\n"
        "from voice.settings import Settings\n"
        "make_diarizer(Settings(diarize_backend='senko', diarize_device='cpu'))\n"
        "assert 'pynndescent' not in sys.modules, 'pynndescent imported'\n"
        "from senko.cluster import cluster_cpu\n"
        "cls = cluster_cpu.umap.UMAP\n"
        "import umap.umap_\n"
        "assert cls is umap.umap_.UMAP and sys.modules['umap'] is umap\n"
        "assert 'pynndescent' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_turns_are_kept_where_the_vad_hears_speech() -> None:
    """Frames of 32 ms: speech scored 0.03 at frames 10-11, nothing else above 0.02."""
    values = np.zeros(100, np.float32)
    values[10:12] = 0.03
    speech = FrameProbabilities("silero-v6", 512, values)
    regions = heard_regions(speech, floor=0.02, pad_s=0.5)
    assert regions == [(0.0, pytest.approx(0.884))]  # 0.32-0.384 s widened by 0.5 s
    turns = [SpeakerTurn(0.1, 0.6, "A"), SpeakerTurn(0.7, 2.0, "B"), SpeakerTurn(2.5, 3.0, "A")]
    kept = keep_heard(turns, regions)
    assert [(t.start, t.end, t.speaker) for t in kept] == [
        (0.1, 0.6, "A"), (0.7, pytest.approx(0.884), "B")
    ]
    assert heard_regions(FrameProbabilities("silero-v6", 512, np.zeros(5, np.float32)), 0.0, 0) == [
        (0.0, pytest.approx(0.16))
    ]  # floor 0: everything is heard
    assert fits(speech, 100 * 512 + 100) and not fits(speech, 99 * 512)
    with pytest.raises(ValueError, match="heard_floor"):
        KitOptions(heard_floor=1.5)
