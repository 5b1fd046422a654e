"""Held-out evaluation through the real endpoint, with Tesseract 5 on the same regions."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eyeops.align import align_to_template, decode_grey
from eyeops.devices import load_layouts
from eyeops.devices.layout import DeviceLayout, LayoutRegistry
from eyeops.fields import read_fields
from eyeops.ocr.client import OcrClient
from eyeops.synth.exams import synthesize_exams
from eyeops.synth.render import RenderedExam

# Confidence thresholds every evaluation also scores, besides the one the service applied: the
# trade-off between silent errors and review work that `EYEOPS_CONFIDENCE_THRESHOLD` is chosen on.
SWEEP_THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995)


def outcomes_at(
    layout: DeviceLayout,
    truths: dict[str, str],
    texts: dict[str, tuple[str, float]],
    thresholds: tuple[float, ...],
) -> dict[float, tuple[int, int]]:
    """(fields sent to review, silent errors) of one exam at each threshold, from what the
    recogniser read ({field: (raw text, confidence)}), through the service's own validation
    (grammar, range, step, confidence, cross-field checks). An empty `texts` (an exam that failed
    to align) is every field in review."""
    out: dict[float, tuple[int, int]] = {}
    for threshold in thresholds:
        readings = read_fields(layout, texts, threshold) if texts else []
        accepted = {r.name: r.raw_text.strip() for r in readings if r.status == "accepted"}
        scored = [name for name in truths if name in accepted]  # a field the exam did not show is not scored
        silent = sum(accepted[name] != truths[name] for name in scored)
        out[threshold] = (len(truths) - len(scored), silent)
    return out


def add_outcomes(into: dict[float, list[int]], outcomes: Mapping[float, Sequence[int]]) -> None:
    """Add one exam's outcomes_at() to running [review, silent errors] counts per threshold."""
    for threshold, (review, silent) in outcomes.items():
        counts = into.setdefault(threshold, [0, 0])
        counts[0] += review
        counts[1] += silent


def threshold_rates(sweep: dict[float, list[int]], fields: int) -> dict[str, dict[str, float]]:
    """{threshold: {review_rate, silent_error_rate}} from {threshold: [review, silent errors]}."""
    n = max(fields, 1)
    return {
        f"{t:g}": {"review_rate": review / n, "silent_error_rate": silent / n}
        for t, (review, silent) in sorted(sweep.items())
    }


@dataclass
class Tally:
    fields: int = 0
    correct: int = 0
    review: int = 0
    silent_errors: int = 0
    exams: int = 0
    exams_correct: int = 0
    tesseract_correct: int = 0
    tesseract_fields: int = 0
    failed: int = 0
    # threshold -> [review, silent errors], recomputed from the raw texts and confidences
    sweep: dict[float, list[int]] = field(default_factory=dict)

    def add_sweep(self, outcomes: dict[float, tuple[int, int]]) -> None:
        add_outcomes(self.sweep, outcomes)

    def rates(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exams": self.exams,
            "fields": self.fields,
            "field_accuracy": self.correct / max(self.fields, 1),
            "exam_accuracy": self.exams_correct / max(self.exams, 1),
            "silent_error_rate": self.silent_errors / max(self.fields, 1),
            "review_rate": self.review / max(self.fields, 1),
            "failed_exams": self.failed,
        }
        if self.tesseract_fields:
            out["tesseract_field_accuracy"] = self.tesseract_correct / self.tesseract_fields
        if self.sweep:
            out["thresholds"] = threshold_rates(self.sweep, self.fields)
        return out


@dataclass
class EvalRun:
    total: Tally = field(default_factory=Tally)
    per_device: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    latencies_ms: list[float] = field(default_factory=list)
    http_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: int = 0
    # Every field read wrong: what it was, what was read, and whether the service caught it.
    wrong_fields: list[dict[str, Any]] = field(default_factory=list)
    # With layouts, every exam is also scored at SWEEP_THRESHOLDS (see outcomes_at).
    layouts: LayoutRegistry | None = None

    def score(self, exam: RenderedExam, result: dict[str, Any]) -> None:
        tallies = (self.total, self.per_device[exam.device_kind])
        fields = {f["name"]: f for f in result.get("fields", [])}
        if self.layouts is not None:
            texts = {n: (f["raw_text"], float(f["confidence"])) for n, f in fields.items()}
            outcomes = outcomes_at(self.layouts[exam.device_kind], exam.texts, texts, SWEEP_THRESHOLDS)
            for t in tallies:
                t.add_sweep(outcomes)
        all_right = result.get("status") != "failed"
        for name, truth in exam.texts.items():
            got = fields.get(name)
            right = got is not None and got["raw_text"].strip() == truth
            all_right &= right
            if got is not None and not right:
                self.wrong_fields.append(
                    {
                        "device_kind": exam.device_kind,
                        "field": name,
                        "truth": truth,
                        **{k: got[k] for k in ("raw_text", "confidence", "status", "reason")},
                    }
                )
            for t in tallies:
                t.fields += 1
                t.correct += right
                if got is None or got["status"] == "review":
                    t.review += 1
                elif not right:
                    t.silent_errors += 1
        for t in tallies:
            t.exams += 1
            t.exams_correct += all_right
            t.failed += result.get("status") == "failed"

    def score_tesseract(self, kind: str, hits: int, total: int) -> None:
        for t in (self.total, self.per_device[kind]):
            t.tesseract_correct += hits
            t.tesseract_fields += total

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            **self.total.rates(),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "duplicates": self.duplicates,
            "http_errors": dict(self.http_errors),
            "wrong_fields": self.wrong_fields,
            "per_device": {k: v.rates() for k, v in sorted(self.per_device.items())},
        }


def tesseract_hits(exam: RenderedExam, layouts: LayoutRegistry) -> tuple[int, int]:
    from eyeops.ocr.tesseract import read_fields

    layout = layouts[exam.device_kind]
    try:
        aligned = align_to_template(decode_grey(exam.image), layout)
    except Exception:
        return 0, len(exam.texts)
    specs = list(layout.all_fields())
    hits = sum(t == exam.texts[s.name] for t, s in zip(read_fields(aligned, specs), specs, strict=True))
    return hits, len(exam.texts)


async def send_all(
    endpoint: str, exams: list[RenderedExam], concurrency: int, run: EvalRun, protocol: str = "v1"
) -> None:
    client = OcrClient(endpoint, protocol=protocol, timeout_s=120)
    gate = asyncio.Semaphore(concurrency)

    async def one(exam: RenderedExam) -> None:
        async with gate:
            t0 = time.perf_counter()
            reply = await client.read_exam(exam.image, exam.device_kind, device_id="eval")
            elapsed = (time.perf_counter() - t0) * 1e3
        if reply.status_code == 200:
            run.latencies_ms.append(elapsed)
            result = reply.exam
            run.duplicates += bool(result.get("duplicate"))
            run.score(exam, result)
        elif reply.status_code == 422:
            run.score(exam, {"status": "failed", "fields": []})
        else:
            run.http_errors[str(reply.status_code)] += 1

    try:
        await asyncio.gather(*(one(e) for e in exams))
    finally:
        await client.aclose()


def run_eval(
    count: int,
    seed: int,
    endpoint: str,
    concurrency: int = 4,
    tesseract: bool = True,
    protocol: str = "v1",
    exams_from: Path | None = None,
) -> dict[str, Any]:
    """Render `count` held-out exams (fonts and noise seeds training never saw), or take the exams of
    a folder with a truth.jsonl (`exams_from`, e.g. a stress set another renderer drew), send them
    through the OCR endpoint, score, and compare with Tesseract."""
    layouts = load_layouts()
    exams: list[Any]
    source: dict[str, Any]
    if exams_from is not None:
        from eyeops.ocr.offline import exam_folder

        exams = list(exam_folder(exams_from))
        count, source = len(exams), {"exams_from": str(exams_from)}
    else:
        exams = list(synthesize_exams(list(layouts), count, seed, split="eval"))
        source = {"count": count, "seed": seed}
    run = EvalRun(layouts=layouts)
    asyncio.run(send_all(endpoint, exams, concurrency, run, protocol))
    if tesseract:
        with ThreadPoolExecutor(2) as pool:
            for exam, (hits, total) in zip(
                exams, pool.map(lambda e: tesseract_hits(e, layouts), exams), strict=True
            ):
                run.score_tesseract(exam.device_kind, hits, total)
    return {**source, "endpoint": endpoint, **run.summary()}
