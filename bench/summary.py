"""The extractive meeting summary against AMI's human summaries and the baselines.

For each AMI meeting in ``../shared/data/ami-text`` (ES2003a, ES2003b): ROUGE-1/2/L
recall and F1 of the key points, and of all parts together, against the human
abstractive summary (and the human extractive one), next to a random-sentence
baseline (mean of 20 seeds) and a lead baseline of the same length in words
(:mod:`tests.summary_eval`); and how long the summary took (seconds, with the
sentence embeddings computed, then again with them cached).

    PYTHONPATH=$PWD .venv/bin/python -m bench.summary

Writes ``bench/results/summary.json`` (machine, commit, load average).
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.common import write_result
from pipelines.meeting.extractive import extractive_parts
from pipelines.meeting.summarize import assemble
from pipelines.meeting.text import split_sentences
from tests.summary_eval import MEETINGS, METRICS, ami_document, evaluate, summary_text, table


def _row(kind: str, result: Any) -> dict[str, Any]:
    return {
        "reference": kind,
        "words": result.words,
        "summary": result.summary.as_dict(),
        "random": result.random.as_dict(),
        "lead": result.lead.as_dict(),
    }


def main() -> None:
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    key_rows, all_rows = [], []
    for meeting in MEETINGS:
        doc = ami_document(meeting)
        started = time.perf_counter()
        parts = extractive_parts(doc)
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        extractive_parts(doc)
        warm_s = time.perf_counter() - started
        summary = assemble({}, parts, [])
        key = " ".join(i.text for i in summary.key_points)
        evals = {
            (scope, kind): evaluate(meeting, doc, text, kind)
            for scope, text in (("key_points", key), ("all_parts", summary_text(summary)))
            for kind in ("abssumm", "extsumm")
        }
        key_rows.append(evals["key_points", "abssumm"])
        all_rows.append(evals["all_parts", "abssumm"])
        results[meeting] = {
            "sentences": len(split_sentences(doc)),
            "transcript_words": sum(len(s.text.split()) for s in doc.segments),
            "seconds_cold": round(cold_s, 2),
            "seconds_cached_embeddings": round(warm_s, 2),
            "items": {
                "key_points": len(summary.key_points),
                "decisions": len(summary.decisions),
                "action_items": len(summary.action_items),
                "open_questions": len(summary.open_questions),
            },
            "scores": [
                {"scope": scope, **_row(kind, result)} for (scope, kind), result in evals.items()
            ],
        }
    means: dict[str, Any] = {}
    for scope, rows in (("key_points", key_rows), ("all_parts", all_rows)):
        means[scope] = {
            which: {
                m: {
                    measure: round(
                        sum(getattr(getattr(r, which), measure)[m] for r in rows) / len(rows), 4
                    )
                    for measure in ("recall", "f1")
                }
                for m in METRICS
            }
            for which in ("summary", "random", "lead")
        }
    results["mean_vs_abssumm"] = means
    print("key points vs abstractive\n" + table(key_rows))
    print("all parts vs abstractive\n" + table(all_rows))
    path = write_result(
        "summary",
        results,
        load_average={"before": load_before, "after": os.getloadavg()},
        method="tests/summary_eval.py: ROUGE (rouge-score, stemmed); baselines cut to the same words",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
