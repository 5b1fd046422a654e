"""Offline OCR evaluation and export, for the `ocr-training` pipeline.

`compare_with_tesseract` reads held-out synthetic exams (fonts and noise seeds training never saw)
with a recogniser checkpoint and with Tesseract 5 on the same aligned regions, through the same
align/crop code the OCR transformer runs. `export_model_repository` lays a checkpoint out as a
Triton model repository (the form KServe's Triton runtime loads from a `storageUri`).
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eyeops.align import align_to_template, crop_regions, decode_grey
from eyeops.devices.layout import FieldSpec, LayoutRegistry
from eyeops.errors import AlignmentFailed
from eyeops.fields import read_fields as validate_fields
from eyeops.ocr.decode import recognize
from eyeops.ocr.model import Recognizer
from eyeops.ocr.peers import PPOCRv4
from eyeops.ocr.peers import read_fields as read_ppocr
from eyeops.ocr.pipeline import second_opinion
from eyeops.settings import Settings
from eyeops.synth.exams import synthesize_exams

MODEL_NAME = "trocr"


class LabelledExam(Protocol):
    """An exam image with the text of each field it shows (a rendered exam, or a file + truth)."""

    @property
    def device_kind(self) -> str: ...
    @property
    def image(self) -> bytes: ...
    @property
    def texts(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class ExamFile:
    device_kind: str
    image: bytes
    texts: dict[str, str]
    name: str


def exam_folder(folder: Path) -> list[ExamFile]:
    """Exams from a folder with a `truth.jsonl` (one line per exam: `file`, `device_kind`, `fields`:
    {name: text as shown}), e.g. a stress set drawn by a renderer other than ours
    (tests/stress/render.py)."""
    truth = folder / "truth.jsonl"
    if not truth.is_file():
        raise FileNotFoundError(f"{truth} does not exist; an exam folder holds images and truth.jsonl")
    exams = []
    for line in truth.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            image = (folder / row["file"]).read_bytes()
            exams.append(ExamFile(row["device_kind"], image, dict(row["fields"]), row["file"]))
    return exams


def held_out_exams(layouts: LayoutRegistry, count: int, seed: int) -> Iterable[LabelledExam]:
    """Synthetic exams drawn with fonts and noise seeds training never saw."""
    return synthesize_exams(list(layouts), count, seed, split="eval")


def shown_hits(read: list[str], specs: list[FieldSpec], truth: dict[str, str]) -> list[bool]:
    """Per field the exam shows, whether a peer's reading (in the order of `specs`) is exact."""
    return [text == truth[s.name] for text, s in zip(read, specs, strict=True) if s.name in truth]


def compare_with_tesseract(
    recognizer: Recognizer,
    layouts: LayoutRegistry,
    exams: Iterable[LabelledExam],
    tesseract: bool = True,
    threshold: float | None = None,
    ppocr: PPOCRv4 | None = None,
) -> dict[str, Any]:
    """Field and exam exact-match rates of the recogniser (grammar-constrained decoding, as served)
    and of Tesseract on the same exams, overall and per device kind, scored on the fields each exam
    shows. An exam that fails to align counts as every field wrong for every reader. With `ppocr`,
    PP-OCRv4's recogniser reads the same regions too (`ppocr_field_accuracy`, `ppocr_exam_accuracy`),
    and `second_opinion` gives the review and silent-error rates as the service answers with its
    second opinion on (eyeops.ocr.pipeline.second_opinion: PP-OCRv4 must agree with accepted
    readings below SECOND_OPINION_BELOW).

    The recogniser's readings also go through the service's validation: `silent_error_rate` and
    `review_rate` at `threshold` (default: the configured confidence threshold), and `thresholds`,
    the same two rates at each of SWEEP_THRESHOLDS."""
    from eyeops.ocr.evaluate import SWEEP_THRESHOLDS, add_outcomes, outcomes_at, threshold_rates
    from eyeops.ocr.tesseract import read_fields

    served = Settings().confidence_threshold if threshold is None else threshold
    sweep = tuple(sorted({served, *SWEEP_THRESHOLDS}))
    tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    # per device kind: threshold -> [review, silent errors]
    statuses: dict[str, dict[float, list[int]]] = defaultdict(dict)
    for exam in exams:
        layout = layouts[exam.device_kind]
        specs = list(layout.all_fields())
        counts = tally[exam.device_kind]
        counts["exams"] += 1
        counts["fields"] += len(exam.texts)
        try:
            aligned = align_to_template(decode_grey(exam.image), layout)
        except AlignmentFailed:
            aligned = None
            counts["unaligned"] += 1
        texts: dict[str, tuple[str, float]] = {}
        if aligned is not None:
            ours = recognize(recognizer, crop_regions(aligned, specs), [s.grammar for s in specs])
            texts = {s.name: (r.text, r.confidence) for r, s in zip(ours, specs, strict=True)}
            ours_hits = [texts[name][0] == truth for name, truth in exam.texts.items()]
            counts["model_fields"] += sum(ours_hits)
            counts["model_exams"] += all(ours_hits)
        add_outcomes(statuses[exam.device_kind], outcomes_at(layout, exam.texts, texts, sweep))
        if tesseract and aligned is not None:
            read = read_fields(aligned, specs)
            theirs = shown_hits(read, specs, exam.texts)
            counts["tesseract_fields"] += sum(theirs)
            counts["tesseract_exams"] += all(theirs)
        if ppocr is not None:
            peer_texts = read_ppocr(ppocr, aligned, specs) if aligned is not None else []
            peer = shown_hits(peer_texts, specs, exam.texts) if peer_texts else [False] * len(exam.texts)
            counts["ppocr_fields"] += sum(peer)
            counts["ppocr_exams"] += all(peer)
            # as served: accepted readings below SECOND_OPINION_BELOW stand only where PP-OCRv4 agrees
            review, silent = len(exam.texts), 0
            if texts:
                peer_by_name = dict(zip((s.name for s in specs), peer_texts, strict=True))
                checked = second_opinion(validate_fields(layout, texts, served), peer_by_name.__getitem__)
                accepted = {r.name: r.raw_text.strip() for r in checked if r.status == "accepted"}
                scored = [name for name in exam.texts if name in accepted]
                review = len(exam.texts) - len(scored)
                silent = sum(accepted[name] != exam.texts[name] for name in scored)
            counts["agreement_review"] += review
            counts["agreement_silent"] += silent

    def rates(c: dict[str, int], status: dict[float, list[int]]) -> dict[str, Any]:
        by_threshold = threshold_rates(status, c["fields"])
        out: dict[str, Any] = {
            "exams": float(c["exams"]),
            "fields": float(c["fields"]),
            "unaligned": float(c["unaligned"]),
            "field_accuracy": c["model_fields"] / max(c["fields"], 1),
            "exam_accuracy": c["model_exams"] / max(c["exams"], 1),
            "confidence_threshold": served,
            **by_threshold[f"{served:g}"],
            "thresholds": by_threshold,
        }
        if tesseract:
            out["tesseract_field_accuracy"] = c["tesseract_fields"] / max(c["fields"], 1)
            out["tesseract_exam_accuracy"] = c["tesseract_exams"] / max(c["exams"], 1)
        if ppocr is not None:
            out["ppocr_field_accuracy"] = c["ppocr_fields"] / max(c["fields"], 1)
            out["ppocr_exam_accuracy"] = c["ppocr_exams"] / max(c["exams"], 1)
            out["second_opinion"] = {
                "review_rate": c["agreement_review"] / max(c["fields"], 1),
                "silent_error_rate": c["agreement_silent"] / max(c["fields"], 1),
            }
        return out

    total: dict[str, int] = defaultdict(int)
    total_statuses: dict[float, list[int]] = {}
    for kind, counts in tally.items():
        for key, value in counts.items():
            total[key] += value
        add_outcomes(total_statuses, statuses[kind])
    return {
        **rates(total, total_statuses),
        "per_device": {kind: rates(c, statuses[kind]) for kind, c in sorted(tally.items())},
    }


def export_model_repository(checkpoint: Path, out: Path, version: int = 1) -> Path:
    """`out/trocr/{config.pbtxt, <version>/model.py, <version>/checkpoint/}`: the shipped model
    definition with a new checkpoint. Returns `out` (the repository root a storageUri points at)."""
    from eyeops.resources import triton_model_template

    template = triton_model_template()
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint} is not a TrOCR checkpoint folder (no config.json)")
    model_dir = out / MODEL_NAME
    (model_dir / str(version)).mkdir(parents=True, exist_ok=False)
    shutil.copy2(template / "config.pbtxt", model_dir / "config.pbtxt")
    shutil.copy2(template / "1" / "model.py", model_dir / str(version) / "model.py")
    shutil.copytree(checkpoint, model_dir / str(version) / "checkpoint")
    if (template.parent / "requirements.txt").is_file():
        shutil.copy2(template.parent / "requirements.txt", out / "requirements.txt")
    return out


def evaluation_html(result: dict[str, Any], title: str = "OCR recogniser evaluation") -> str:
    """The run page's report: accuracy overall and per device kind, the model against Tesseract
    (and the champion, when it was read on the same exams), with a bar chart."""
    import html

    import numpy as np

    from eyeops.plots import figure_html, pyplot

    plt = pyplot()

    kinds = list(result["per_device"])
    readers = [("model", "field_accuracy")]
    if "tesseract_field_accuracy" in result:
        readers.append(("Tesseract 5", "tesseract_field_accuracy"))
    champion = result.get("champion_same_set")
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = np.arange(len(kinds))
    width = 0.8 / (len(readers) + (champion is not None))
    for n, (label, key) in enumerate(readers):
        ax.bar(x + n * width, [result["per_device"][k][key] for k in kinds], width, label=label)
    if champion is not None:
        ax.bar(
            x + len(readers) * width,
            [champion["per_device"][k]["field_accuracy"] for k in kinds],
            width,
            label="champion",
        )
    ax.set_xticks(x + width * (len(readers) - 1) / 2, [k.replace("_", "\n") for k in kinds], fontsize=7)
    ax.set_ylabel("field accuracy")
    ax.set_ylim(0, 1.0)
    ax.legend(fontsize=8)
    rows = []
    for kind in ["all", *kinds]:
        r = result if kind == "all" else result["per_device"][kind]
        cells = [kind, f"{r['exams']:.0f}", f"{r['field_accuracy']:.4f}", f"{r['exam_accuracy']:.3f}"]
        if "tesseract_field_accuracy" in r:
            cells += [f"{r['tesseract_field_accuracy']:.4f}", f"{r['tesseract_exam_accuracy']:.3f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "<th>device kind</th><th>exams</th><th>field acc.</th><th>exam acc.</th>"
    if "tesseract_field_accuracy" in result:
        head += "<th>Tesseract field acc.</th><th>Tesseract exam acc.</th>"
    note = ""
    if champion is not None:
        note = (
            f"<p>champion on the same exams: field accuracy {champion['field_accuracy']:.4f},"
            f" exam accuracy {champion['exam_accuracy']:.3f}</p>"
        )
    return (
        f"<html><body><h1>{html.escape(title)}</h1><p>held-out synthetic exams: fonts and noise seeds"
        f" training never saw</p>{note}<table><tr>{head}</tr>{''.join(rows)}</table>"
        f"{figure_html(fig, 'field accuracy per device kind')}</body></html>"
    )
