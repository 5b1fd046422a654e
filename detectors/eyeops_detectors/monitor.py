"""The monitor, apart from any web framework: logged inference events in → windows → detectors →
metrics; ground truth (implanted size by feedback, postoperative vault by OCR) joined to the
prediction that was made."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from eyeops_detectors.detectors import SIZES_MM, AnyArray, DetectorSet, size_index
from eyeops_detectors.metrics import CLAIMED_COVERAGE, MonitorMetrics
from eyeops_detectors.payloads import (
    LensAnswer,
    PayloadError,
    PayloadTooLarge,
    lens_answers,
    lens_eye_ids,
    lens_features,
    ocr_exams,
)
from eyeops_detectors.store import MonitorStore

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
TARGET_VAULT_UM = (250.0, 750.0)  # DOMAIN.md §3, the range most clinics use
OUTCOME_DEVICE = "anterior_segment_oct"
OUTCOME_FIELD = "vault_um"
PATIENT_MEMORY = 5000  # patients remembered for the one-eye-per-patient rule
# The AS-OCT that counts as the outcome: the first one 3 to 8 weeks after surgery (a setting; the
# vault settles over the first weeks, and later readings measure something else).
OUTCOME_WINDOW_DAYS = (21, 56)
# E|r| of a normal residual is σ·√(2/π); a 90 % interval's half-width is 1.645 σ.
EXPECTED_ABS_PER_HALF_WIDTH = float(np.sqrt(2 / np.pi) / 1.6449)
COMPONENTS = ("predictor", "transformer", "explainer")  # KServe's; the only Ce-Component labels
PENDING_REQUESTS = 10_000  # lens requests waiting for their response (200) before they count
# The kinds eyeops ships layouts for; `--device-kind` adds an onboarded one. Events of any other kind
# never name a metric series (a label value is never what a client chose).
SHIPPED_DEVICE_KINDS = (
    "anterior_segment_oct", "autorefractor", "noncontact_tonometer", "optical_biometer",
    "scheimpflug_tomographer", "specular_microscope",
)  # fmt: skip


def patient_of(eye_id: str) -> str:
    """`P0001234-OD` → `P0001234`."""
    return eye_id.rsplit("-", 1)[0]


class UnknownService(LookupError):
    """An event from an InferenceService this monitor was not told about."""


@dataclass(frozen=True)
class LoggedEvent:
    ce_id: str
    ce_type: str
    service: str
    component: str
    data: Any
    body_sha256: str = ""  # with ce_id and component: a replay is dropped, a new payload is not


class Monitor:
    def __init__(
        self,
        detectors: DetectorSet,
        store: MonitorStore,
        services: dict[str, str],
        metrics: MonitorMetrics | None = None,
        rolling: int = 200,
        device_kinds: list[str] | None = None,
        outcome_window_days: tuple[int, int] = OUTCOME_WINDOW_DAYS,
    ) -> None:
        """`services` maps InferenceService names to their role, "lens" or "ocr". `device_kinds`:
        the kinds whose OCR events may name a metric series (besides those the detectors know);
        any other kind is counted as "other" and feeds no window."""
        bad = {v for v in services.values()} - {"lens", "ocr"}
        if bad:
            raise ValueError(f"service roles must be lens or ocr, got {', '.join(sorted(bad))}")
        self.detectors = detectors
        self.store = store
        self.services = services
        self.metrics = metrics or MonitorMetrics()
        self.rolling = rolling
        self.outcome_window_days = outcome_window_days
        self.window = detectors.config.window
        self._online_keep = 2 * max(detectors.config.online_window_sizes)
        self.device_kinds = (
            {*SHIPPED_DEVICE_KINDS, *(device_kinds or ())}
            | set(detectors.ocr_confidence)
            | set(detectors.ocr_values)
        )
        # Which version of the stored online stream this process's online detector was fed (None:
        # not yet). Another replica feeding it changes the version; then the stored rows are
        # replayed before the next event (OnlineFeatureDetector's state is those rows).
        self._online_version: str | None = None

    def start(self) -> None:
        """Continue where the last process stopped (or where the other replicas are): replay the
        online detector's recent events, and read every gauge from the store."""
        if self.detectors.reference.training_mae_um is not None:
            self.metrics.training_mae.set(self.detectors.reference.training_mae_um)
        with self.store.transaction() as tx:
            self._online_version = None
            self._sync_online(tx)
        self.sync_gauges()

    def sync_gauges(self) -> None:
        """Set every gauge from the store: the ones an event's check set (drift flags, p-values,
        expected coverage), as the last event on whichever replica left them, and the ones computed
        from stored rows (window fill, review rates, rolling outcomes and expectations), computed
        again. A scrape of any replica then reads the same gauges (counters stay per process, as
        Prometheus sums them)."""
        with self.store.transaction(exclusive=False) as tx:
            stored = tx.gauges()
            self._refresh_gauges(tx)
        for name, labels, value in stored:  # only what `_set` wrote
            self._gauge(name, labels, value)

    def _gauge(self, name: str, labels: tuple[str, ...], value: float) -> None:
        gauge = getattr(self.metrics, name)
        (gauge.labels(*labels) if labels else gauge).set(value)

    def _set(self, tx: MonitorStore, name: str, labels: tuple[str, ...], value: float) -> None:
        """A gauge only a check computes: set here and kept in the event's transaction."""
        self._gauge(name, labels, value)
        tx.set_gauge(name, labels, float(value))

    def _sync_online(self, tx: MonitorStore) -> None:
        """Bring the online detector to the stored stream if another process fed it since."""
        version = tx.online_version()
        if version is not None and version == self._online_version:
            return
        self.detectors.online.reset()
        for row in tx.online_rows():
            self.detectors.online.update(np.asarray(row))
        self._online_version = version

    # -- events ----------------------------------------------------------------------------------
    def ingest(self, event: LoggedEvent) -> str:
        role = self.services.get(event.service)
        if role is None:
            self.metrics.rejected.labels("unknown_service").inc()
            raise UnknownService(
                f"the event names an InferenceService this monitor does not read; known: {', '.join(sorted(self.services))}"
            )
        if event.ce_type not in (REQUEST, RESPONSE):
            self.metrics.rejected.labels("unknown_type").inc()
            raise PayloadError(f"Ce-Type must be {REQUEST} or {RESPONSE}")
        seen_as = f"{event.ce_id}#{event.body_sha256[:16]}" if event.body_sha256 else event.ce_id
        online_before = self._online_version
        try:
            with self.store.transaction() as tx:
                if not tx.first_sight(seen_as, event.ce_type, event.component):
                    self.metrics.duplicates.inc()
                    return "duplicate"
                try:
                    if role == "lens":
                        self._lens(tx, event)
                    else:
                        self._ocr(tx, event)
                except PayloadError:
                    raise
                except (TypeError, ValueError, KeyError, AttributeError, OverflowError, IndexError) as exc:
                    # A value of the wrong type deep in an event: the event is wrong, not the monitor.
                    raise PayloadError(
                        f"event data has a value of the wrong type ({type(exc).__name__})"
                    ) from exc
        except BaseException as exc:
            # Rolled back: the stored stream is as it was, whatever this process's detector saw.
            if self._online_version != online_before:
                self._online_version = None
            if isinstance(exc, PayloadError):
                self.metrics.rejected.labels(
                    "too_large" if isinstance(exc, PayloadTooLarge) else "malformed"
                ).inc()
            raise
        kind = "request" if event.ce_type == REQUEST else "response"
        self.metrics.events.labels(event.service, event.component, kind).inc()
        return "accepted"

    def _lens(self, tx: MonitorStore, event: LoggedEvent) -> None:
        if event.ce_type == REQUEST:
            if event.component == "transformer":
                return  # eye ids only; the features are in the predictor's request
            rows = lens_features(event.data, self.detectors.reference.feature_names)
            if not np.isfinite(rows).all():
                raise PayloadError("lens request: features must be finite numbers")
            ids = lens_eye_ids(event.data)
            # Kept in the store: the response may reach another replica, or this one restarted.
            tx.push_pending(event.ce_id, rows.tolist(), ids, PENDING_REQUESTS)
            return
        answers = lens_answers(event.data)
        if event.component == "predictor":
            waiting = tx.pop_pending(event.ce_id)
            if waiting is not None:
                rows, ids = np.asarray(waiting[0], dtype=np.float64), waiting[1]
                if len(rows) == len(answers):  # the request this response answered
                    self._features(tx, rows, ids)
        for answer in answers:
            if answer.eye_id:
                tx.record_answer(event.ce_id, answer.eye_id, answer.__dict__)
        if event.component != "transformer":  # count each prediction once, from the predictor
            predicted = [[*a.vault_um, float(size_index([a.recommended_size_mm])[0])] for a in answers]
            self._window(tx, "lens_predictions", predicted)
            self._expected(tx, answers)

    def _expected(self, tx: MonitorStore, answers: list[LensAnswer]) -> None:
        """Performance before the outcome arrives, at the recommended size: the expected absolute
        error the model's direct loss estimator put in the answer, or (an answer without one, from a
        model saved before it) the interval rule, 0.485 × the half-width; and the mean P(in range),
        over the newest `rolling` answers (kept in the store)."""
        recent: list[tuple[float, float | None]] = []
        for a in answers:
            j = int(size_index([a.recommended_size_mm])[0])
            direct = a.expected_abs_error_um[j] if j < len(a.expected_abs_error_um) else None
            if direct is None:
                direct = EXPECTED_ABS_PER_HALF_WIDTH * (a.upper_um[j] - a.lower_um[j]) / 2.0
            p_in = a.p_in_range[j] if j < len(a.p_in_range) else None
            recent.append((float(direct), None if p_in is None else float(p_in)))
        if not recent:
            return
        tx.record_expected(recent, self.rolling)  # the gauges: computed at the scrape

    def _features(self, tx: MonitorStore, rows: AnyArray, ids: list[str | None]) -> None:
        if len(ids) == len(rows):
            # One eye per patient: fellow eyes are strongly correlated, and tests that assume
            # independent events raise false alarms on pairs (bench/drift_detection.py).
            keep = [eye is None or tx.first_eye(patient_of(eye), PATIENT_MEMORY) for eye in ids]
            rows = rows[np.asarray(keep, dtype=bool)]
        if len(rows):
            self._window(tx, "lens_features", rows.tolist())
            self._online(tx, rows)

    def _ocr(self, tx: MonitorStore, event: LoggedEvent) -> None:
        if event.ce_type == REQUEST:
            return  # images; the monitor reads what the OCR made of them
        for exam in ocr_exams(event.data):
            kind = str(exam["device_kind"])
            if kind not in self.device_kinds:
                # Never a label value a client chose: an unknown kind is counted, not windowed.
                self.metrics.rejected.labels("unknown_device_kind").inc()
                continue
            fields = [f for f in exam["fields"] if isinstance(f, dict)]
            reviews = [f.get("status") == "review" for f in fields]
            rate = tx.record_ocr_fields(kind, reviews, self.rolling * 10)
            self._gauge("review_rate", (kind,), rate)
            rows = [
                [float(f.get("confidence") or 0.0), float(r)] for f, r in zip(fields, reviews, strict=True)
            ]
            if kind in self.detectors.ocr_confidence:
                self._window(tx, f"ocr/{kind}", rows)
            values = self.detectors.ocr_values.get(kind)
            if values is not None:
                read: dict[str, float] = {
                    str(f.get("name")): float(f["value"])
                    for f in fields
                    if f.get("status") == "accepted" and isinstance(f.get("value"), int | float)
                }
                if all(name in read for name in values.feature_names):  # exams with every value
                    self._window(tx, f"ocr_values/{kind}", [[float(read[n]) for n in values.feature_names]])
            if kind == OUTCOME_DEVICE:
                self._outcome(tx, exam)

    # -- windows ---------------------------------------------------------------------------------
    def _window(self, tx: MonitorStore, stream: str, rows: list[list[float]]) -> None:
        filled = tx.append_rows(stream, rows)
        if filled < self.window:
            self._gauge("window_fill", (stream,), filled)
            return
        window = np.asarray(tx.take_window(stream, self.window), dtype=np.float64)
        self._gauge("window_fill", (stream,), filled - len(window))
        if stream == "lens_features":
            self._record(tx, "lens_features", self.detectors.features.check(window), len(window))
            if self.detectors.coverage is not None:
                estimate = self.detectors.coverage.estimate(window)
                self._set(tx, "expected_coverage", (), estimate.coverage)
                self._set(tx, "expected_coverage_rows", (), estimate.effective_rows)
        elif stream == "lens_predictions":
            self._record(tx, "lens_predictions", self.detectors.predictions.check(window[:, :4]), len(window))
            result = self.detectors.recommended.check(window[:, 4].astype(np.int64))
            self._record(tx, "recommended_size", result, len(window))
        elif stream.startswith("ocr_values/"):
            kind = stream.split("/", 1)[1]
            self._record(tx, stream, self.detectors.ocr_values[kind].check(window), len(window))
        else:
            kind = stream.split("/", 1)[1]
            self._record(
                tx,
                f"ocr_confidence/{kind}",
                self.detectors.ocr_confidence[kind].check(window[:, :1]),
                len(window),
            )
            self._record(
                tx,
                f"ocr_review/{kind}",
                self.detectors.ocr_review[kind].check(window[:, 1].astype(np.int64)),
                len(window),
            )

    def _online(self, tx: MonitorStore, rows: AnyArray) -> None:
        self._sync_online(tx)
        for row in rows:
            if self.detectors.online.update(row):
                self._record_flag(tx, "lens_features_online", True, {}, 1)
                self.detectors.online.reset()
                self._online_version = tx.clear_online()
            else:
                self._online_version = tx.append_online([row.tolist()], self._online_keep)

    def _record(self, tx: MonitorStore, detector: str, result: Any, rows: int) -> None:
        self._record_flag(tx, detector, result.is_drift, result.p_values, rows)

    def _record_flag(
        self, tx: MonitorStore, detector: str, is_drift: bool, p_values: dict[str, float], rows: int
    ) -> None:
        tx.record_result(detector, is_drift, p_values, rows)
        self.metrics.checks.labels(detector).inc()
        self._set(tx, "is_drift", (detector,), float(is_drift))
        if is_drift:
            self.metrics.alarms.labels(detector).inc()
        for feature, p in p_values.items():
            self._set(tx, "p_value", (detector, feature), float(p))

    # -- ground truth ----------------------------------------------------------------------------
    def feedback(
        self, eye_id: str, implanted_size_mm: float, surgery_date: str, request_id: str | None
    ) -> str:
        if not math.isfinite(implanted_size_mm) or round(implanted_size_mm, 1) not in SIZES_MM:
            raise PayloadError(f"implanted_size_mm must be one of {', '.join(map(str, SIZES_MM))}")
        try:
            surgery = dt.date.fromisoformat(surgery_date)
        except ValueError as exc:
            raise PayloadError("surgery_date must be a real date, YYYY-MM-DD") from exc
        if surgery > dt.date.today() + dt.timedelta(days=1):
            raise PayloadError("surgery_date lies in the future; send the day the lens was implanted")
        with self.store.transaction() as tx:
            if tx.answer_for(eye_id, request_id) is None:
                raise PayloadError(
                    "no logged lens prediction for this eye"
                    + (" and request_id" if request_id else "")
                    + "; feedback must refer to a recommendation the lens service gave"
                )
            tx.record_feedback(eye_id, implanted_size_mm, surgery_date, request_id)
            joined = self._join(tx, eye_id)
        return "joined" if joined else "recorded"

    def _outcome(self, tx: MonitorStore, exam: dict[str, Any]) -> None:
        """An AS-OCT exam: its accepted vault is kept by date. A pre-operative exam (no vault, or one
        not checked) is read like any other and is simply not an outcome."""
        patient, side, exam_date = exam.get("patient_id"), exam.get("laterality"), exam.get("exam_date")
        field = next(
            (f for f in exam["fields"] if isinstance(f, dict) and f.get("name") == OUTCOME_FIELD), None
        )
        if not patient or not side or not exam_date or field is None or field.get("status") != "accepted":
            return  # no identity, no date, or a vault nobody has checked: not ground truth
        value = field.get("value")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return  # a pre-operative AS-OCT reads no vault
        try:
            day = dt.date.fromisoformat(str(exam_date)).isoformat()
        except ValueError as exc:
            raise PayloadError("an AS-OCT exam_date must be YYYY-MM-DD") from exc
        eye_id = f"{patient}-{side}"[:64]
        tx.record_vault(eye_id, day, float(value))
        self._join(tx, eye_id)

    def _join(self, tx: MonitorStore, eye_id: str) -> bool:
        """Join the eye's outcome (its first vault reading in the postoperative window) to the
        prediction the surgeon used, once both the surgery (feedback) and that reading are known."""
        given = tx.feedback_for(eye_id)
        if given is None:
            return False
        size, surgery_date, request_id = given
        try:
            surgery = dt.date.fromisoformat(surgery_date)
        except ValueError:
            return False
        first, last = (surgery + dt.timedelta(days=d) for d in self.outcome_window_days)
        observed = tx.first_vault_between(eye_id, first.isoformat(), last.isoformat())
        if observed is None:
            return False
        exam_date, vault = observed
        answer = tx.answer_for(eye_id, request_id)
        if answer is None:
            return False
        j = SIZES_MM.index(round(size, 1))
        error = abs(answer["vault_um"][j] - vault)
        covered = answer["lower_um"][j] <= vault <= answer["upper_um"][j]
        in_range = TARGET_VAULT_UM[0] <= vault <= TARGET_VAULT_UM[1]
        tx.record_outcome(eye_id, exam_date, vault, error, covered, in_range)
        support = (answer.get("supported") or [None] * len(SIZES_MM))[j]
        if round(size, 1) != round(float(answer["recommended_size_mm"]), 1) and support is not None:
            tx.record_off_recommendation(eye_id, bool(support), covered)
        self._outcome_gauges(tx)
        return True

    def _rolling(self, store: MonitorStore) -> dict[str, Any]:
        """Outcome count, MAE, coverage and in-range rate over the newest `rolling` outcomes."""
        recent = np.asarray(store.recent_outcomes(self.rolling), dtype=np.float64).reshape(-1, 3)
        means = [float(m) for m in recent.mean(axis=0)] if len(recent) else [None, None, None]
        return {
            "outcomes": len(recent),
            **dict(zip(("mae_um", "coverage", "in_range_rate"), means, strict=True)),
        }

    def _off_recommendation(self, store: MonitorStore) -> dict[str, dict[str, Any]]:
        """Per support, over the newest `rolling` eyes implanted off the recommendation: how many,
        the share covered, the claim, and P(covered ≤ k | n, claim), a one-sided binomial test."""
        from scipy.stats import binom

        out = {}
        for support, claimed in CLAIMED_COVERAGE.items():
            covered = store.recent_off_recommendation(support == "supported", self.rolling)
            n, k = len(covered), sum(covered)
            out[support] = {
                "outcomes": n,
                "coverage": k / n if n else None,
                "claimed_coverage": claimed,
                "undercoverage_p": float(binom.cdf(k, n, claimed)) if n else None,
            }
        return out

    def _outcome_gauges(self, tx: MonitorStore) -> None:
        for support, off in self._off_recommendation(tx).items():
            self._gauge("off_outcomes", (support,), off["outcomes"])
            if off["outcomes"]:
                self._gauge("off_coverage", (support,), off["coverage"])
                self._gauge("off_p", (support,), off["undercoverage_p"])
        rolling = self._rolling(tx)
        self._gauge("outcomes", (), rolling["outcomes"])
        if rolling["outcomes"]:
            self._gauge("mae", (), rolling["mae_um"])
            self._gauge("coverage", (), rolling["coverage"])
            self._gauge("in_range", (), rolling["in_range_rate"])

    def _refresh_gauges(self, tx: MonitorStore) -> None:
        """The gauges computed from the stored rows, recomputed (at start and at each scrape)."""
        self._outcome_gauges(tx)
        mean_abs, mean_p = tx.expected_means(self.rolling)
        if mean_abs is not None:
            self._gauge("expected_mae", (), mean_abs)
        if mean_p is not None:
            self._gauge("expected_in_range", (), mean_p)
        for kind, rate in tx.review_rates().items():
            self._gauge("review_rate", (kind,), rate)
        fill = tx.window_fill()
        for stream in {
            "lens_features",
            "lens_predictions",
            *(f"ocr/{k}" for k in self.detectors.ocr_confidence),
            *(f"ocr_values/{k}" for k in self.detectors.ocr_values),
            *fill,
        }:
            self._gauge("window_fill", (stream,), fill.get(stream, 0))

    def status(self) -> dict[str, Any]:
        with self.store.transaction(exclusive=False) as tx:
            results, fill, rolling = tx.results(), tx.window_fill(), self._rolling(tx)
            off = self._off_recommendation(tx)
        latest = {result["detector"]: result for result in results}  # the last check of each
        return {"detectors": latest, "window_rows": fill, **rolling, "off_recommendation": off}

    def history(self, detector: str | None = None) -> list[dict[str, Any]]:
        with self.store.transaction(exclusive=False) as tx:
            return tx.results(detector)
