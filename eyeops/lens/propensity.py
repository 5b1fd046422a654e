"""Propensities P(size | eye) from the calibrated classifier, fast enough for one eye at a time."""

from __future__ import annotations

from typing import Any

import numpy as np


def calibrated_proba(model: Any, x: np.ndarray) -> np.ndarray:
    """`model.predict_proba(x)` for scikit-learn's CalibratedClassifierCV over LightGBM with
    isotonic calibrators, the same numbers without scikit-learn's per-call validation (which cost
    a single eye most of its propensity time): each fold's raw LightGBM margins, its fitted
    isotonic interpolants, the one-vs-rest normalisation and the mean over folds, as scikit-learn
    1.9 computes them (tests/unit/test_lens_model.py compares the two). Any other model: its own
    predict_proba."""
    folds = getattr(model, "calibrated_classifiers_", None)
    if not folds or getattr(model, "method", None) != "isotonic" or len(model.classes_) < 3:
        return np.asarray(model.predict_proba(x), dtype=float)
    x = np.asarray(x, dtype=float)
    n_classes = len(model.classes_)
    mean = np.zeros((len(x), n_classes))
    for fold in folds:
        estimator = fold.estimator
        booster = getattr(estimator, "booster_", None)
        if booster is None or not hasattr(estimator, "decision_function"):
            return np.asarray(model.predict_proba(x), dtype=float)
        margins = np.asarray(booster.predict(x, raw_score=True, num_threads=1 if len(x) < 256 else 0))
        margins = margins.reshape(len(x), -1)
        proba = np.zeros((len(x), n_classes))
        columns = np.searchsorted(fold.classes, estimator.classes_)
        for column, margin, calibrator in zip(columns, margins.T, fold.calibrators, strict=True):
            clipped = np.clip(margin, calibrator.X_min_, calibrator.X_max_)
            proba[:, column] = np.asarray(calibrator.f_(clipped)).astype(clipped.dtype)
        total = proba.sum(axis=1)[:, np.newaxis]
        proba = np.divide(proba, total, out=np.full_like(proba, 1 / n_classes), where=total != 0)
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        mean += proba
    mean /= len(folds)
    return mean
