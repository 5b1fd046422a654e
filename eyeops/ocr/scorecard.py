"""One scorecard for every OCR evaluation: the served one (answers of the running endpoint) and the
offline one (a checkpoint read in this process) count the same things under the same keys.

Per exam it takes what the service answered, or would answer, for each field (raw text, confidence,
status) or nothing when the exam was refused at alignment, and the truth of the fields the exam
shows. It counts field and exam accuracy (exact raw text), the share of exams accepted with no
person, the arbitrated accuracy (the accepted reading or, in review, the proposal a reviewer is
offered), review and silent errors (wrong and accepted) as answered, the same two rates
recomputed at each of SWEEP_THRESHOLDS through the service's own validation, and the hits of
peers (Tesseract, PP-OCR) on the same regions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eyeops.devices.layout import DeviceLayout, FieldSpec, LayoutRegistry
from eyeops.fields import read_fields

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


def shown_hits(read: list[str], specs: Sequence[FieldSpec], truth: dict[str, str]) -> list[bool]:
    """Per field the exam shows, whether a peer's reading (in the order of `specs`) is exact."""
    return [text == truth[s.name] for text, s in zip(read, specs, strict=True) if s.name in truth]


def _settled(answered: Mapping[str, Any]) -> str:
    """A field's text as a reviewer who confirms what the console offers would leave it: the
    accepted reading, else the arbitration's proposal (eyeops.ocr.arbitrate), else the primary
    reading."""
    proposal = answered.get("proposal")
    if answered.get("status") != "accepted" and proposal is not None:
        return str(proposal).strip()
    return str(answered.get("raw_text", "")).strip()


@dataclass
class Tally:
    exams: int = 0
    fields: int = 0
    unaligned: int = 0
    correct: int = 0
    exams_correct: int = 0
    exams_accepted: int = 0  # every field accepted: no person saw the exam
    settled: int = 0  # fields right as a reviewer would find them: the accepted reading or the proposal
    exams_settled: int = 0
    review: int = 0
    silent_errors: int = 0
    # threshold -> [review, silent errors], recomputed from the raw texts and confidences
    sweep: dict[float, list[int]] = field(default_factory=dict)
    # peer -> [fields read exactly, exams read exactly]
    peers: dict[str, list[int]] = field(default_factory=dict)

    def add_sweep(self, outcomes: Mapping[float, Sequence[int]]) -> None:
        add_outcomes(self.sweep, outcomes)

    def rates(self) -> dict[str, Any]:
        n = max(self.fields, 1)
        out: dict[str, Any] = {
            "exams": self.exams,
            "fields": self.fields,
            "unaligned": self.unaligned,
            "field_accuracy": self.correct / n,
            "exam_accuracy": self.exams_correct / max(self.exams, 1),
            "accepted_exam_rate": self.exams_accepted / max(self.exams, 1),
            "arbitrated_field_accuracy": self.settled / n,
            "arbitrated_exam_accuracy": self.exams_settled / max(self.exams, 1),
            "review_rate": self.review / n,
            "silent_error_rate": self.silent_errors / n,
        }
        if self.sweep:
            out["thresholds"] = threshold_rates(self.sweep, self.fields)
        for peer, (fields_hit, exams_hit) in sorted(self.peers.items()):
            out[f"{peer}_field_accuracy"] = fields_hit / n
            out[f"{peer}_exam_accuracy"] = exams_hit / max(self.exams, 1)
        return out


@dataclass
class Scorecard:
    """Counts over many exams, overall and per device kind. `layouts` enables the threshold sweep."""

    layouts: LayoutRegistry | None = None
    total: Tally = field(default_factory=Tally)
    per_device: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    # Every field read wrong: what it was, what was read, and whether the service caught it.
    wrong_fields: list[dict[str, Any]] = field(default_factory=list)

    def _tallies(self, kind: str) -> tuple[Tally, Tally]:
        return self.total, self.per_device[kind]

    def add_exam(
        self, kind: str, truths: Mapping[str, str], answered: Sequence[Mapping[str, Any]] | None
    ) -> None:
        """One exam: `answered` is the service's field list (dicts with name, raw_text, confidence,
        status, reason), or None when the exam was refused (alignment failed): every field wrong and
        in review."""
        tallies = self._tallies(kind)
        fields = {f["name"]: f for f in answered or []}
        if self.layouts is not None:
            texts = {n: (str(f["raw_text"]), float(f["confidence"])) for n, f in fields.items()}
            outcomes = outcomes_at(self.layouts[kind], dict(truths), texts, SWEEP_THRESHOLDS)
            for t in tallies:
                t.add_sweep(outcomes)
        all_right = all_settled = all_accepted = answered is not None
        for name, truth in truths.items():
            got = fields.get(name)
            right = got is not None and str(got["raw_text"]).strip() == truth
            settled = got is not None and _settled(got) == truth
            all_right &= right
            all_settled &= settled
            all_accepted &= got is not None and got["status"] == "accepted"
            if got is not None and not right:
                self.wrong_fields.append(
                    {
                        "device_kind": kind,
                        "field": name,
                        "truth": truth,
                        **{k: got.get(k) for k in ("raw_text", "confidence", "status", "reason")},
                    }
                )
            for t in tallies:
                t.fields += 1
                t.correct += right
                t.settled += settled
                if got is None or got["status"] != "accepted":
                    t.review += 1
                elif not right:
                    t.silent_errors += 1
        for t in tallies:
            t.exams += 1
            t.exams_correct += all_right
            t.exams_settled += all_settled
            t.exams_accepted += all_accepted
            t.unaligned += answered is None

    def add_peer(self, kind: str, peer: str, hits: Sequence[bool]) -> None:
        """A peer's exact-match per shown field of one exam (all False when it had no regions)."""
        for t in self._tallies(kind):
            counts = t.peers.setdefault(peer, [0, 0])
            counts[0] += sum(hits)
            counts[1] += bool(hits) and all(hits)

    def summary(self) -> dict[str, Any]:
        return {
            **self.total.rates(),
            "per_device": {k: v.rates() for k, v in sorted(self.per_device.items())},
            "wrong_fields": self.wrong_fields,
        }
