"""Held-out evaluation through the real endpoint, with Tesseract 5 on the same regions."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eyeops.align import align_to_template, decode_grey
from eyeops.devices import load_layouts
from eyeops.devices.layout import LayoutRegistry
from eyeops.errors import AlignmentFailed
from eyeops.ocr.client import OcrClient
from eyeops.ocr.scorecard import Scorecard, shown_hits
from eyeops.synth.exams import synthesize_exams
from eyeops.synth.render import RenderedExam


@dataclass
class EvalRun:
    """A served evaluation: the scorecard of the answers, plus what only a live endpoint has."""

    card: Scorecard = field(default_factory=Scorecard)
    latencies_ms: list[float] = field(default_factory=list)
    http_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: int = 0

    def score(self, exam: RenderedExam, result: dict[str, Any]) -> None:
        refused = result.get("status") == "failed"
        self.card.add_exam(exam.device_kind, exam.texts, None if refused else result.get("fields", []))

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            **self.card.summary(),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "duplicates": self.duplicates,
            "http_errors": dict(self.http_errors),
        }


def tesseract_hits(exam: RenderedExam, layouts: LayoutRegistry) -> list[bool]:
    """Tesseract's exact match per field the exam shows, on the regions the service crops."""
    from eyeops.ocr.tesseract import read_fields

    layout = layouts[exam.device_kind]
    try:
        aligned = align_to_template(decode_grey(exam.image), layout)
    except AlignmentFailed:
        return [False] * len(exam.texts)
    specs = list(layout.all_fields())
    return shown_hits(read_fields(aligned, specs), specs, exam.texts)


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
    run = EvalRun(Scorecard(layouts))
    asyncio.run(send_all(endpoint, exams, concurrency, run, protocol))
    if tesseract:
        with ThreadPoolExecutor(2) as pool:
            for exam, hits in zip(exams, pool.map(lambda e: tesseract_hits(e, layouts), exams), strict=True):
                run.card.add_peer(exam.device_kind, "tesseract", hits)
    return {**source, "endpoint": endpoint, **run.summary()}
