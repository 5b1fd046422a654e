"""The monitor's Prometheus metrics: low-cardinality labels only (detector, feature name, device
kind, service), never an eye id."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge

# What the lens service claims per size (eyeops.lens.model.LensConfig: 1 − alpha for the conformal
# interval of a supported size, 1 − bound_alpha for the bounds of an unsupported one).
CLAIMED_COVERAGE = {"supported": 0.90, "unsupported": 0.95}


class MonitorMetrics:
    """Low-cardinality labels only: detector, feature name, device kind, service. Never eye ids."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "eyeops_monitor_events", "Logger events accepted", ["service", "component", "type"], registry=r
        )
        self.rejected = Counter(
            "eyeops_monitor_rejected", "Events refused, by reason", ["reason"], registry=r
        )
        self.duplicates = Counter("eyeops_monitor_duplicate_events", "Events seen before (Ce-Id)", registry=r)
        self.is_drift = Gauge(
            "eyeops_drift_is_drift", "1 if the last check flagged drift", ["detector"], registry=r
        )
        self.p_value = Gauge(
            "eyeops_drift_p_value",
            "Last p-value per detector and feature",
            ["detector", "feature"],
            registry=r,
        )
        self.alarms = Counter("eyeops_drift_alarms", "Drift alarms raised", ["detector"], registry=r)
        self.checks = Counter("eyeops_drift_checks", "Detector checks run", ["detector"], registry=r)
        self.window_fill = Gauge(
            "eyeops_drift_window_rows", "Rows waiting in a window", ["stream"], registry=r
        )
        self.mae = Gauge(
            "eyeops_lens_mae_um", "Rolling MAE of the implanted size's predicted vault", registry=r
        )
        self.coverage = Gauge(
            "eyeops_lens_interval_coverage", "Rolling share of outcomes inside the implanted size's interval",
            registry=r,
        )  # fmt: skip
        self.in_range = Gauge(
            "eyeops_lens_in_range_rate", "Rolling share of vaults in 250–750 µm", registry=r
        )
        self.outcomes = Gauge("eyeops_lens_outcomes", "Outcomes in the rolling window", registry=r)
        self.expected_mae = Gauge(
            "eyeops_lens_expected_mae_um",
            "Expected MAE of the recommended size's vault over the rolling predictions, before any"
            " outcome: the model's direct loss estimate where the answer carries one, else 0.485 ×"
            " the interval half-width (a normal residual's E|r| for 90 % intervals)",
            registry=r,
        )
        self.expected_coverage = Gauge(
            "eyeops_lens_expected_coverage",
            "Expected interval coverage of the implanted size over the last window of lens eyes, before"
            " any outcome: the calibration eyes' out-of-sample coverage weighted to the window's"
            " covariates (NaN: the detector set holds no calibration eyes)",
            registry=r,
        )
        self.expected_coverage_rows = Gauge(
            "eyeops_lens_expected_coverage_effective_rows",
            "Effective number of calibration eyes behind eyeops_lens_expected_coverage (Kish)",
            registry=r,
        )
        self.expected_coverage.set(math.nan)
        self.expected_coverage_rows.set(math.nan)
        self.expected_in_range = Gauge(
            "eyeops_lens_expected_in_range_rate",
            "Mean P(vault in range) of the recommended sizes over the rolling predictions",
            registry=r,
        )
        self.training_mae = Gauge(
            "eyeops_lens_training_mae_um", "The served lens model's MAE on its evaluation cohort", registry=r
        )
        # Eyes implanted with a size other than the recommended one: the sizes whose bounds rest on
        # the most assumption (issue 29). support: supported (interval) or unsupported (bounds).
        self.off_outcomes = Gauge(
            "eyeops_lens_off_recommendation_outcomes",
            "Joined outcomes of eyes implanted off the recommendation, in the rolling window",
            ["support"], registry=r,
        )  # fmt: skip
        self.off_coverage = Gauge(
            "eyeops_lens_off_recommendation_coverage",
            "Share of those outcomes inside the implanted size's interval or bounds",
            ["support"], registry=r,
        )  # fmt: skip
        self.off_claimed = Gauge(
            "eyeops_lens_off_recommendation_claimed_coverage",
            "The coverage the lens service claims for those intervals or bounds",
            ["support"], registry=r,
        )  # fmt: skip
        self.off_p = Gauge(
            "eyeops_lens_off_recommendation_undercoverage_p",
            "One-sided binomial p-value of that coverage under the claim (small: they under-cover)",
            ["support"], registry=r,
        )  # fmt: skip
        for support, claimed in CLAIMED_COVERAGE.items():
            self.off_outcomes.labels(support).set(0)
            self.off_coverage.labels(support).set(math.nan)
            self.off_claimed.labels(support).set(claimed)
            self.off_p.labels(support).set(math.nan)
        self.review_rate = Gauge(
            "eyeops_ocr_review_rate", "Rolling share of fields sent to review", ["device_kind"], registry=r
        )
