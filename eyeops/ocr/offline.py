"""Offline OCR evaluation and export, for the `ocr-training` pipeline.

`compare_with_tesseract` reads held-out synthetic exams (fonts and noise seeds training never saw)
with a recogniser checkpoint and with Tesseract 5 on the same aligned regions, through the same
align/crop code the OCR transformer runs. `export_model_repository` lays a checkpoint out as a
Triton model repository (the form KServe's Triton runtime loads from a `storageUri`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eyeops.align import align_to_template, decode_grey
from eyeops.devices.layout import LayoutRegistry
from eyeops.errors import AlignmentFailed
from eyeops.fields import read_fields as validate_fields
from eyeops.ocr.arbitrate import SECOND_OPINION_BELOW, Calibrations, arbitrate, needs_second
from eyeops.ocr.decode import recognize
from eyeops.ocr.model import Recognizer
from eyeops.ocr.peers import CtcRecognizer
from eyeops.ocr.peers import read_fields as read_ppocr
from eyeops.ocr.scorecard import Scorecard, shown_hits
from eyeops.regions import crop_regions
from eyeops.resources import TRITON_SECOND_MODEL_NAME
from eyeops.settings import Settings
from eyeops.synth.exams import synthesize_exams
from eyeops.synth.values import ValueMode

MODEL_NAME = "trocr"
SECOND_MODEL_NAME = TRITON_SECOND_MODEL_NAME


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


def held_out_exams(
    layouts: LayoutRegistry, count: int, seed: int, values: ValueMode = "realistic"
) -> Iterable[LabelledExam]:
    """Synthetic exams drawn with fonts and noise seeds training never saw; `values` "grammar":
    texts drawn uniformly from each field's grammar (a device whose values are unusual)."""
    return synthesize_exams(list(layouts), count, seed, split="eval", mode=values)


def compare_with_tesseract(
    recognizer: Recognizer,
    layouts: LayoutRegistry,
    exams: Iterable[LabelledExam],
    tesseract: bool = True,
    threshold: float | None = None,
    ppocr: CtcRecognizer | None = None,
    calibrations: Calibrations | None = None,
    records: list[dict[str, Any]] | None = None,
    crops_in_records: bool = False,
    count_forced: bool = False,
) -> dict[str, Any]:
    """Score a recogniser (grammar-constrained decoding, as served) on labelled exams with the
    scorecard the served evaluation uses (eyeops.ocr.scorecard): each exam goes through the
    service's align and crop code, its readings through the service's validation at `threshold`
    (default: the configured confidence threshold) and, with `ppocr`, through the service's
    arbitration with `calibrations` (eyeops.ocr.arbitrate; default the shipped ones). Tesseract and
    PP-OCR read the same regions as peers (`tesseract_*`, `ppocr_*` accuracies). An exam that fails
    to align counts as every field wrong, for every reader. `records`, when given, gains one row
    per field of each aligned exam (`exam`: its index in `exams`): both readings with their raw
    confidences, TrOCR's own verdict, the served one after arbitration with its proposal, Tesseract's
    reading (with `tesseract`) and the truth (None where the exam does not show the field): what
    `eyeops ocr calibrate` fits on and bench.scorecard groups; with `crops_in_records`, each row also
    holds the crop both recognisers read (`crop`), what the traffic loop learns from. `count_forced`:
    TrOCR's confidence under the old rule, where characters the grammar forces count too
    (eyeops.ocr.decode.decode)."""
    if ppocr is not None and calibrations is None:
        from eyeops.ocr.arbitrate import shipped_calibrations

        calibrations = shipped_calibrations()
    from eyeops.ocr.tesseract import read_fields

    settings = Settings()
    served = settings.confidence_threshold if threshold is None else threshold
    below = SECOND_OPINION_BELOW if settings.second_opinion_below is None else settings.second_opinion_below
    card = Scorecard(layouts)
    for exam in exams:
        layout = layouts[exam.device_kind]
        specs = list(layout.all_fields())
        try:
            aligned = align_to_template(decode_grey(exam.image), layout)
        except AlignmentFailed:
            aligned = None
        if aligned is None:
            card.add_exam(exam.device_kind, exam.texts, None)
            for peer, wanted in (("tesseract", tesseract), ("ppocr", ppocr is not None)):
                if wanted:
                    card.add_peer(exam.device_kind, peer, [False] * len(exam.texts))
            continue
        crops = crop_regions(aligned, specs, layout.template.value_align)
        ours = recognize(recognizer, crops, [s.grammar for s in specs], count_forced=count_forced)
        texts = {s.name: (r.text, r.confidence) for r, s in zip(ours, specs, strict=True)}
        readings = validated = validate_fields(layout, texts, served)
        by_name: dict[str, tuple[str, float]] = {}
        if ppocr is not None:
            assert calibrations is not None
            second = read_ppocr(ppocr, aligned, specs)
            card.add_peer(exam.device_kind, "ppocr", shown_hits([r.text for r in second], specs, exam.texts))
            by_name = {s.name: (r.text, r.confidence) for s, r in zip(specs, second, strict=True)}
            asked = needs_second(readings, below, layout=layout)
            readings = arbitrate(layout, readings, by_name, asked, calibrations, below)
        index = card.total.exams
        card.add_exam(exam.device_kind, exam.texts, [r.to_dict() for r in readings])
        tesseract_texts = read_fields(aligned, specs) if tesseract else None
        if tesseract_texts is not None:
            card.add_peer(exam.device_kind, "tesseract", shown_hits(tesseract_texts, specs, exam.texts))
        if records is not None and ppocr is not None:
            served_by = {r.name: r for r in readings}
            other = dict(zip((s.name for s in specs), tesseract_texts or [], strict=False))
            records.extend(
                {
                    "exam": index,
                    "device_kind": exam.device_kind,
                    "field": r.name,
                    "truth": exam.texts.get(r.name),
                    "text": r.raw_text.strip(),
                    "confidence": r.confidence,
                    "status": r.status,
                    "reason": (r.reason or "").split(":", 1)[0],
                    "second_text": by_name[r.name][0].strip(),
                    "second_confidence": by_name[r.name][1],
                    "served_status": served_by[r.name].status,
                    "proposal": served_by[r.name].proposal,
                    "tesseract_text": other.get(r.name),
                    **({"crop": crops[i]} if crops_in_records else {}),
                }
                for i, r in enumerate(validated)
            )
    out = card.summary()
    out["confidence_threshold"] = served
    out["second_opinion"] = ppocr is not None
    for rates in out["per_device"].values():
        rates["confidence_threshold"] = served
    return out


def export_model_repository(checkpoint: Path, out: Path, version: int = 1) -> Path:
    """`out/trocr/{config.pbtxt, <version>/model.py, <version>/checkpoint/}`: the shipped model
    definition with a new checkpoint, beside the shipped second recogniser `out/ppocr/` (the OCR
    transformer asks both on one Triton). Returns `out` (the repository root a storageUri points at)."""
    from eyeops.resources import triton_model_template

    template = triton_model_template()
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint} is not a TrOCR checkpoint folder (no config.json)")
    model_dir = out / MODEL_NAME
    (model_dir / str(version)).mkdir(parents=True, exist_ok=False)
    shutil.copy2(template / "config.pbtxt", model_dir / "config.pbtxt")
    shutil.copy2(template / "1" / "model.py", model_dir / str(version) / "model.py")
    shutil.copytree(checkpoint, model_dir / str(version) / "checkpoint")
    second = template.parent / SECOND_MODEL_NAME
    shutil.copytree(second, out / SECOND_MODEL_NAME, ignore=shutil.ignore_patterns("__pycache__"))
    if (template.parent / "requirements.txt").is_file():
        shutil.copy2(template.parent / "requirements.txt", out / "requirements.txt")
    return out


def evaluation_html(
    result: dict[str, Any],
    records: Sequence[Mapping[str, Any]] | None = None,
    calibrations: Calibrations | None = None,
    title: str = "OCR recogniser evaluation",
) -> str:
    """The run page's report: accuracy overall and per device kind, the model against Tesseract
    (and the champion, when it was read on the same exams), with a bar chart; with `records` and
    `calibrations`, both recognisers' reliability diagrams (raw and calibrated confidence)."""
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
    reliability = ""
    if records and calibrations is not None:
        from eyeops.ocr.calibrate import reliability_html

        reliability = reliability_html(records, calibrations, "Reliability of each recogniser's confidence")
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
        f"{figure_html(fig, 'field accuracy per device kind')}{reliability}</body></html>"
    )
