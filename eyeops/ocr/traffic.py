"""Learning from the clinic's own traffic: which served fields may become training labels.

A clinic's devices draw the same screens every day, so the lasting source of accuracy is its own
exams. A field read in production becomes a **pseudo-label** only when all of these hold:

- its exam was accepted: every field passed its grammar, range, step and cross-field checks, and no
  person had to look at it (an exam that went to review or failed never teaches);
- both recognisers read it, alike (TrOCR and the PP-OCR second reader, which are asked about every
  field below the confidence bar, the fields the model has most to learn from);
- the calibrated chance that both are wrong, times the measured dependence between their errors
  (eyeops.ocr.arbitrate.Calibrations), is at most `max_both_wrong` (ten times stricter by default
  than what serving accepts on agreement);
- its device is consistent with its own history: it sends the kind it always sent, and its share
  of accepted exams has not fallen well below its own past (a gateway sending another device's
  images, or a misconfigured kind, shows as both). A device with too short a history is trusted
  for what passed the checks above: a new device is what this loop is for.

Each device gives at most `cap_per_device` labels (its newest, spread over its fields in turn), so
no device steers the model by volume. Reviewed fields (a person confirmed or corrected them) join
as labels with no cap. Every label keeps its provenance: exam, device, kind, field, the two
recognisers' versions, and whether a person or the agreement labelled it.

The labels feed the `ocr-training` pipeline like the reviewed set (a CropSet file), with classic
exams of every kind replayed, and the OCR gate refuses a model that reads any device kind worse on
the held-out exams or on held-out reviewed crops (eyeops.ocr.gate). `bench.first_week` runs this
loop over a new device's first simulated week.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eyeops.crops import CROP_HEIGHT, CROP_WIDTH
from eyeops.ocr.arbitrate import Calibrations
from eyeops.ocr.dataset import CropSet


@dataclass(frozen=True)
class TrafficField:
    """One served field, as the learning loop sees it."""

    exam_id: str
    device_id: str
    device_kind: str
    field: str
    grammar: str
    crop: np.ndarray  # (CROP_HEIGHT, CROP_WIDTH) uint8, as the recogniser read it
    text: str  # TrOCR's reading
    confidence: float
    second_text: str | None  # PP-OCR's, None where it was not asked
    second_confidence: float | None
    exam_status: str  # accepted | review | failed
    models: str = ""  # "trocr <version> + ppocr <version>"
    reviewed_text: str | None = None  # what a person confirmed or typed, where one did


@dataclass(frozen=True)
class DeviceHistory:
    """A device's exams over a period: how many, how many accepted, which kinds it sent."""

    exams: int
    accepted: int
    kinds: frozenset[str]

    @property
    def accepted_share(self) -> float:
        return self.accepted / max(self.exams, 1)


@dataclass(frozen=True)
class LearningPolicy:
    max_both_wrong: float = 0.0005  # serving accepts agreement at 0.005
    cap_per_device: int = 2000
    min_history_exams: int = 30  # fewer: the device is new, nothing to compare with
    # A device whose accepted share in the window is this many standard errors below its history,
    # and at least `accepted_drop_min` below, is held out of this round.
    accepted_drop_sigmas: float = 3.0
    accepted_drop_min: float = 0.1


@dataclass
class Harvest:
    labels: CropSet
    provenance: list[dict[str, Any]]
    refused_devices: dict[str, str]  # device id -> why its fields teach nothing this round
    per_device: dict[str, dict[str, int]] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """Counts and reasons, no readings: what may go into logs and run pages."""
        return {
            "labels": len(self.labels),
            "pseudo": sum(p["source"] == "agreement" for p in self.provenance),
            "reviewed": sum(p["source"] == "review" for p in self.provenance),
            "per_device": self.per_device,
            "refused_devices": self.refused_devices,
        }


def device_refusal(
    window: DeviceHistory, history: DeviceHistory | None, policy: LearningPolicy
) -> str | None:
    """Why a device's traffic in this window disagrees with its own history, or None."""
    if history is None or history.exams < policy.min_history_exams:
        return None
    new_kinds = sorted(window.kinds - history.kinds)
    if new_kinds:
        return (
            f"sends {', '.join(new_kinds)} where its history has only {', '.join(sorted(history.kinds))}"
            " (another device's images, or a misconfigured kind)"
        )
    past, now = history.accepted_share, window.accepted_share
    spread = math.sqrt(max(past * (1 - past), 1e-6) / max(window.exams, 1))
    if now < past - max(policy.accepted_drop_sigmas * spread, policy.accepted_drop_min):
        return f"accepted {now:.0%} of its exams in this window against {past:.0%} before"
    return None


def _is_pseudo_label(f: TrafficField, calibrations: Calibrations, policy: LearningPolicy) -> bool:
    if f.exam_status != "accepted" or f.second_text is None or f.second_confidence is None:
        return False
    if f.second_text.strip() != f.text.strip() or not f.text.strip():
        return False
    return calibrations.both_wrong(f.confidence, f.second_confidence) <= policy.max_both_wrong


def _spread_cap(fields: list[TrafficField], cap: int) -> list[TrafficField]:
    """At most `cap` of `fields` (oldest first), the newest of each field name in turn."""
    by_name: dict[str, list[TrafficField]] = defaultdict(list)
    for f in fields:
        by_name[f.field].append(f)
    queues = [list(reversed(v)) for _, v in sorted(by_name.items())]
    kept: list[TrafficField] = []
    while len(kept) < cap and any(queues):
        for queue in queues:
            if queue and len(kept) < cap:
                kept.append(queue.pop(0))
    return kept


def harvest(
    fields: Sequence[TrafficField],
    window: Mapping[str, DeviceHistory],
    history: Mapping[str, DeviceHistory],
    calibrations: Calibrations,
    policy: LearningPolicy | None = None,
) -> Harvest:
    """Labels from `fields` (oldest first): pseudo-labels under `policy`, and every reviewed field.
    `window` is each device's exams in the period the fields come from; `history` its exams before."""
    policy = policy or LearningPolicy()
    refused: dict[str, str] = {}
    for device, seen in window.items():
        reason = device_refusal(seen, history.get(device), policy)
        if reason is not None:
            refused[device] = reason
    per_device: dict[str, dict[str, int]] = defaultdict(lambda: {"fields": 0, "pseudo": 0, "reviewed": 0})
    candidates: dict[str, list[TrafficField]] = defaultdict(list)
    chosen: list[tuple[TrafficField, str, str]] = []  # field, label, source
    for f in fields:
        if f.crop.shape != (CROP_HEIGHT, CROP_WIDTH):
            raise ValueError(f"a crop of {f.crop.shape}, not ({CROP_HEIGHT}, {CROP_WIDTH})")
        per_device[f.device_id]["fields"] += 1
        if f.reviewed_text is not None:  # a person's word stands, whatever the device's state
            chosen.append((f, f.reviewed_text, "review"))
            per_device[f.device_id]["reviewed"] += 1
        elif f.device_id not in refused and _is_pseudo_label(f, calibrations, policy):
            candidates[f.device_id].append(f)
    for device, offered in sorted(candidates.items()):
        kept = _spread_cap(offered, policy.cap_per_device)
        per_device[device]["pseudo"] = len(kept)
        per_device[device]["over_cap"] = len(offered) - len(kept)
        chosen += [(f, f.text.strip(), "agreement") for f in kept]
    if chosen:
        crops = np.stack([f.crop for f, _, _ in chosen]).astype(np.uint8)
    else:
        crops = np.zeros((0, CROP_HEIGHT, CROP_WIDTH), np.uint8)
    labels = CropSet(
        crops,
        [label for _, label, _ in chosen],
        [f.grammar for f, _, _ in chosen],
        [f.device_kind for f, _, _ in chosen],
        [f.field for f, _, _ in chosen],
    )
    provenance = [
        {
            "exam_id": f.exam_id,
            "device_id": f.device_id,
            "device_kind": f.device_kind,
            "field": f.field,
            "models": f.models,
            "source": source,
        }
        for f, _, source in chosen
    ]
    return Harvest(labels, provenance, refused, dict(per_device))


def split_heldout(harvested: Harvest, share: float = 0.2) -> tuple[CropSet, CropSet]:
    """(train, held out): the reviewed crops of a `share` of exams are held out for the gate, whole
    exams chosen by a hash of the exam id (stable across rounds, so a crop once held out never
    trains a later round). Pseudo-labels are never held out: the gate judges on what a person said."""
    import hashlib

    def held(exam: str) -> bool:
        return int(hashlib.sha256(exam.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share

    data = harvested.labels
    mask = np.array([p["source"] == "review" and held(p["exam_id"]) for p in harvested.provenance], bool)

    def pick(keep: np.ndarray) -> CropSet:
        idx = np.flatnonzero(keep)
        return CropSet(
            data.crops[idx],
            [data.texts[i] for i in idx],
            [data.grammars[i] for i in idx],
            [data.kinds[i] for i in idx],
            [data.fields[i] for i in idx],
        )

    return pick(~mask), pick(mask)


def crop_accuracy_per_kind(recognizer: Any, data: CropSet) -> dict[str, dict[str, float]]:
    """Exact-match share per device kind on labelled crops, decoding as served: the gate's
    `heldout_crops` input."""
    from eyeops.ocr.decode import recognize

    out: dict[str, dict[str, float]] = {}
    for kind in sorted(set(data.kinds)):
        idx = [i for i, k in enumerate(data.kinds) if k == kind]
        results = recognize(recognizer, data.crops[idx], [data.grammars[i] for i in idx])
        hits = sum(r.text == data.texts[i] for r, i in zip(results, idx, strict=True))
        out[kind] = {"crops": len(idx), "exact_match": hits / len(idx)}
    return out
