"""The detector set the monitoring service runs, fitted from reference data and saved as plain
arrays plus a manifest (no pickles): windowed tests with FDR correction, an online CVM detector with
an expected run time, prediction drift and, given OCR reference data, OCR quality per device kind.

Reference (`.npz`, written by eyeops.monitoring.reference in the main environment): `feature_names`,
`features` (n, k), `prediction_names`, `predictions` (n, 4), `recommended` (n,), optionally
`ocr_device_kind`, `ocr_confidence`, `ocr_review` (one row per field read), and
`calibration_features` (m, k), `calibration_covered` (m,): the lens model's calibration eyes and
whether their implanted size's interval covered the vault, out of sample (expected coverage).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from eyeops_detectors.expected import MIN_REFERENCE_ROWS, ExpectedCoverage
from eyeops_detectors.feature_drift import AlibiKSDetector, DriftResult, FloatArray

AnyArray = npt.NDArray[Any]

SIZES_MM = (12.1, 12.6, 13.2, 13.7)
MANIFEST = "manifest.json"
ARRAYS = "reference.npz"


@dataclass(frozen=True)
class DetectorConfig:
    window: int = 200  # events per window for the windowed tests
    p_val: float = 0.005  # family-wise (FDR-corrected) false-alarm rate per window
    ert: int = 10000  # online detector: expected events between false alarms with no drift
    online_window_sizes: tuple[int, ...] = (20, 50, 100)
    online_reference: int = 300  # reference rows for the online detector (its cost grows with the square)
    seed: int = 0

    def n_bootstraps(self, n_features: int) -> int:
        """Enough simulated streams to estimate the per-step (1 − β) quantile, β ≈ 1/(d·ERT)
        (alibi-detect refuses fewer than 1/β)."""
        return max(10_000, math.ceil(1.2 * n_features * self.ert))


@dataclass(frozen=True)
class Reference:
    feature_names: list[str]
    features: FloatArray
    prediction_names: list[str]
    predictions: FloatArray
    recommended: FloatArray
    ocr_device_kind: AnyArray | None = None
    ocr_confidence: FloatArray | None = None
    ocr_review: AnyArray | None = None
    training_mae_um: float | None = None  # the lens model's evaluation MAE, for the MAE alert
    # per device kind: names of its numeric fields and one row of accepted values per exam
    ocr_values: dict[str, tuple[list[str], FloatArray]] = field(default_factory=dict)
    # the lens model's calibration eyes (features as `features`) and their out-of-sample coverage
    calibration_features: FloatArray | None = None
    calibration_covered: AnyArray | None = None

    @classmethod
    def load(cls, path: Path) -> Reference:
        with np.load(path, allow_pickle=False) as data:
            missing = {"feature_names", "features", "prediction_names", "predictions", "recommended"} - set(
                data.files
            )
            if missing:
                raise ValueError(f"{path} lacks {', '.join(sorted(missing))}; write it with save_reference")
            ocr = "ocr_confidence" in data.files
            return cls(
                [str(n) for n in data["feature_names"]],
                np.asarray(data["features"], dtype=np.float64),
                [str(n) for n in data["prediction_names"]],
                np.asarray(data["predictions"], dtype=np.float64),
                np.asarray(data["recommended"], dtype=np.float64),
                np.asarray(data["ocr_device_kind"]).astype(str) if ocr else None,
                np.asarray(data["ocr_confidence"], dtype=np.float64) if ocr else None,
                np.asarray(data["ocr_review"], dtype=np.int64) if ocr else None,
                float(data["training_mae_um"]) if "training_mae_um" in data.files else None,
                {
                    key.removeprefix("ocr_values__"): (
                        [str(n) for n in data[f"ocr_value_names__{key.removeprefix('ocr_values__')}"]],
                        np.asarray(data[key], dtype=np.float64),
                    )
                    for key in data.files
                    if key.startswith("ocr_values__")
                },
                *_calibration(data, path),
            )


def _calibration(data: Any, path: Path) -> tuple[FloatArray | None, AnyArray | None]:
    """The optional calibration eyes; absent in references written before them."""
    if "calibration_features" not in data.files or "calibration_covered" not in data.files:
        return None, None
    features = np.asarray(data["calibration_features"], dtype=np.float64)
    covered = np.asarray(data["calibration_covered"]).astype(np.bool_).reshape(-1)
    if features.ndim != 2 or features.shape[1] != len(data["feature_names"]) or len(features) != len(covered):
        raise ValueError(
            f"{path}: calibration_features must be (m, {len(data['feature_names'])}) and"
            " calibration_covered (m,)"
        )
    return features, covered


def size_index(sizes_mm: Sequence[float] | AnyArray) -> AnyArray:
    """Recommended size (mm) → category 0–3."""
    values = np.asarray(sizes_mm, dtype=np.float64).reshape(-1, 1)
    index: AnyArray = np.argmin(np.abs(values - np.asarray(SIZES_MM)[None, :]), axis=1).astype(np.int64)
    return index


class ChiSquareDetector:
    """alibi-detect ChiSquareDrift on one categorical column (recommended size, review flag)."""

    def __init__(self, reference: AnyArray, name: str, categories: int, p_val: float) -> None:
        from alibi_detect.cd import ChiSquareDrift

        self.name = name
        ref = np.asarray(reference, dtype=np.int64).reshape(-1, 1)
        self._detector = ChiSquareDrift(ref, p_val=p_val, categories_per_feature={0: list(range(categories))})

    def check(self, window: AnyArray) -> DriftResult:
        out = self._detector.predict(np.asarray(window, dtype=np.int64).reshape(-1, 1), return_p_val=True)
        data = out["data"]
        p = float(np.atleast_1d(data["p_val"])[0])
        return DriftResult(
            bool(data["is_drift"]), {self.name: p}, float(np.min(np.atleast_1d(data["threshold"])))
        )


class OnlineFeatureDetector:
    """alibi-detect CVMDriftOnline (Ross et al. 2012, adapted): one event at a time, thresholds set
    for an expected run time (ERT) between false alarms. The thresholds depend only on the reference
    size, window sizes, ERT and feature count, so they are simulated once when fitting and stored;
    loading reuses them instead of simulating again."""

    def __init__(
        self,
        reference: FloatArray,
        feature_names: Sequence[str],
        ert: int,
        window_sizes: Sequence[int],
        n_bootstraps: int,
        thresholds: AnyArray | None = None,
    ) -> None:
        from alibi_detect.cd import CVMDriftOnline

        stored = thresholds

        class _Stored(CVMDriftOnline):  # type: ignore[misc]
            def _configure_thresholds(self) -> None:
                if stored is None:
                    super()._configure_thresholds()
                else:
                    self.thresholds = stored

        self.feature_names = list(feature_names)
        self._detector = _Stored(
            reference.astype(np.float64),
            ert=ert,
            window_sizes=list(window_sizes),
            n_bootstraps=n_bootstraps,
            batch_size=64,
            verbose=False,
        )

    @property
    def thresholds(self) -> AnyArray:
        return np.asarray(self._detector.thresholds)

    @property
    def t(self) -> int:
        return int(self._detector.t)

    def update(self, x: FloatArray) -> bool:
        """Feed one event; True when drift is flagged (the detector is then reset by the caller)."""
        out = self._detector.predict(np.asarray(x, dtype=np.float64).reshape(-1))
        return bool(out["data"]["is_drift"])

    def reset(self) -> None:
        self._detector.reset_state()

    def save_state(self, path: Path) -> None:
        self._detector.save_state(path)

    def load_state(self, path: Path) -> None:
        self._detector.load_state(path)


@dataclass
class DetectorSet:
    """Everything the monitoring service checks, built from one reference."""

    config: DetectorConfig
    reference: Reference
    features: AlibiKSDetector
    predictions: AlibiKSDetector
    recommended: ChiSquareDetector
    online: OnlineFeatureDetector
    ocr_confidence: dict[str, AlibiKSDetector] = field(default_factory=dict)
    ocr_review: dict[str, ChiSquareDetector] = field(default_factory=dict)
    ocr_values: dict[str, AlibiKSDetector] = field(default_factory=dict)
    coverage: ExpectedCoverage | None = None  # None for a reference without calibration eyes

    @classmethod
    def fit(
        cls, reference: Reference, config: DetectorConfig, online_thresholds: AnyArray | None = None
    ) -> DetectorSet:
        rng = np.random.default_rng(config.seed)
        take = min(config.online_reference, len(reference.features))
        online_rows = reference.features[rng.choice(len(reference.features), take, replace=False)]
        d = len(reference.feature_names)
        ocr_conf: dict[str, AlibiKSDetector] = {}
        ocr_rev: dict[str, ChiSquareDetector] = {}
        if reference.ocr_device_kind is not None:
            assert reference.ocr_confidence is not None and reference.ocr_review is not None
            for kind in sorted(set(reference.ocr_device_kind.tolist())):
                mask = reference.ocr_device_kind == kind
                if mask.sum() < 30:
                    continue
                ocr_conf[kind] = AlibiKSDetector(
                    reference.ocr_confidence[mask].reshape(-1, 1), ["confidence"], config.p_val
                )
                ocr_rev[kind] = ChiSquareDetector(reference.ocr_review[mask], "review", 2, config.p_val)
        ocr_val = {
            kind: AlibiKSDetector(values, names, config.p_val)
            for kind, (names, values) in reference.ocr_values.items()
            if len(values) >= 30
        }
        coverage = None
        if (
            reference.calibration_features is not None
            and reference.calibration_covered is not None
            and len(reference.calibration_features) >= MIN_REFERENCE_ROWS
        ):
            coverage = ExpectedCoverage(reference.calibration_features, reference.calibration_covered)
        return cls(
            config,
            reference,
            AlibiKSDetector(reference.features, reference.feature_names, config.p_val),
            AlibiKSDetector(reference.predictions, reference.prediction_names, config.p_val),
            ChiSquareDetector(size_index(reference.recommended), "recommended_size", 4, config.p_val),
            OnlineFeatureDetector(
                online_rows,
                reference.feature_names,
                config.ert,
                config.online_window_sizes,
                config.n_bootstraps(d),
                online_thresholds,
            ),
            ocr_conf,
            ocr_rev,
            ocr_val,
            coverage,
        )

    def save(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        r = self.reference
        arrays: dict[str, AnyArray] = {
            "feature_names": np.array(r.feature_names),
            "features": r.features,
            "prediction_names": np.array(r.prediction_names),
            "predictions": r.predictions,
            "recommended": r.recommended,
            "online_thresholds": self.online.thresholds,
        }
        if r.training_mae_um is not None:
            arrays["training_mae_um"] = np.asarray(r.training_mae_um)
        if r.calibration_features is not None and r.calibration_covered is not None:
            arrays["calibration_features"] = r.calibration_features
            arrays["calibration_covered"] = np.asarray(r.calibration_covered, dtype=np.bool_)
        for kind, (names, values) in r.ocr_values.items():
            arrays[f"ocr_value_names__{kind}"] = np.array(names)
            arrays[f"ocr_values__{kind}"] = values
        if r.ocr_device_kind is not None:
            assert r.ocr_confidence is not None and r.ocr_review is not None
            arrays |= {
                "ocr_device_kind": r.ocr_device_kind,
                "ocr_confidence": r.ocr_confidence,
                "ocr_review": r.ocr_review,
            }
        with (out / ARRAYS).open("wb") as handle:
            np.savez_compressed(handle, **arrays)
        manifest = {
            "format": 1,
            "engine": "alibi-detect 0.13",
            "config": asdict(self.config),
            "detectors": {
                "lens_features": {"kind": "KSDrift", "correction": "fdr", "features": r.feature_names},
                "lens_features_online": {"kind": "CVMDriftOnline", "ert": self.config.ert},
                "lens_predictions": {"kind": "KSDrift", "correction": "fdr", "features": r.prediction_names},
                "recommended_size": {"kind": "ChiSquareDrift", "categories": list(SIZES_MM)},
                **{f"ocr_confidence/{k}": {"kind": "KSDrift"} for k in self.ocr_confidence},
                **{f"ocr_review/{k}": {"kind": "ChiSquareDrift"} for k in self.ocr_review},
                **{
                    f"ocr_values/{k}": {"kind": "KSDrift", "correction": "fdr", "features": d.feature_names}
                    for k, d in self.ocr_values.items()
                },
                **(
                    {
                        "expected_coverage": {
                            "kind": "importance-weighted coverage (logistic density ratio)",
                            **self.coverage.summary(),
                        }
                    }
                    if self.coverage is not None
                    else {}
                ),
            },
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, path: Path) -> DetectorSet:
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format") != 1:
            raise ValueError(f"{path} holds detectors in format {manifest.get('format')}; this code reads 1")
        raw = manifest["config"]
        config = DetectorConfig(**{**raw, "online_window_sizes": tuple(raw["online_window_sizes"])})
        reference = Reference.load(path / ARRAYS)
        with np.load(path / ARRAYS, allow_pickle=False) as data:
            thresholds = np.asarray(data["online_thresholds"])
        return cls.fit(reference, config, online_thresholds=thresholds)


def evaluate_heldout(
    detectors: DetectorSet, heldout: Reference, windows: int = 100, shift_sd: float = 0.5
) -> dict[str, Any]:
    """False alarms on windows drawn from held-out reference rows (no shift), whether a shift of
    `shift_sd` standard deviations in one feature (WTW when present) is caught on one window, and
    alarms of the online detector over the held-out stream."""
    from scipy.stats import binom

    config = detectors.config
    rng = np.random.default_rng(config.seed + 1)
    n = len(heldout.features)
    size = min(config.window, n)
    alarms = 0
    for _ in range(windows):
        rows = rng.choice(n, size, replace=size > n)
        alarms += detectors.features.check(heldout.features[rows]).is_drift
    names = heldout.feature_names
    column = names.index("wtw_mm") if "wtw_mm" in names else 0
    shifted = heldout.features[rng.choice(n, size, replace=size > n)].copy()
    shifted[:, column] += shift_sd * detectors.reference.features[:, column].std()
    caught = detectors.features.check(shifted)
    online_alarms = 0
    for row in heldout.features:
        if detectors.online.update(row):
            online_alarms += 1
            detectors.online.reset()
    detectors.online.reset()
    return {
        "heldout_windows": windows,
        "heldout_false_alarm_rate": alarms / windows,
        # The most alarms that are not significantly (1 %) more than p_val per window predicts.
        "false_alarm_budget": float(binom.ppf(0.99, windows, config.p_val)) / windows,
        "shift_detected": bool(caught.is_drift),
        "shift_feature": names[column],
        "shift_p_value": caught.p_values[names[column]],
        "online_heldout_events": n,
        "online_false_alarms": online_alarms,
    }


def split(reference: Reference, heldout_fraction: float, seed: int) -> tuple[Reference, Reference]:
    """Rows into a fitting part and a held-out part (OCR rows stay with the fitting part)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(reference.features))
    cut = int(len(order) * (1 - heldout_fraction))
    fit_rows, held_rows = order[:cut], order[cut:]

    def part(rows: AnyArray, ocr: bool) -> Reference:
        return Reference(
            reference.feature_names,
            reference.features[rows],
            reference.prediction_names,
            reference.predictions[rows],
            reference.recommended[rows],
            reference.ocr_device_kind if ocr else None,
            reference.ocr_confidence if ocr else None,
            reference.ocr_review if ocr else None,
            reference.training_mae_um,
            reference.ocr_values if ocr else {},
            reference.calibration_features,  # other eyes than `features`: not split
            reference.calibration_covered,
        )

    return part(fit_rows, True), part(held_rows, False)
