import numpy as np
import pytest

from eyeops_detectors.feature_drift import AlibiKSDetector

pytestmark = pytest.mark.unit


def _reference(rng: np.random.Generator, n: int = 500) -> np.ndarray:
    return np.column_stack([rng.normal(11.8, 0.45, n), rng.normal(3.1, 0.45, n), rng.normal(4.5, 0.45, n)])


def test_shift_in_one_feature_is_flagged_and_named() -> None:
    rng = np.random.default_rng(0)
    det = AlibiKSDetector(_reference(rng), ["wtw_mm", "acd_mm", "lt_mm"])
    window = _reference(rng, 200)
    window[:, 1] += 0.4  # ACD read 0.4 mm too deep
    result = det.check(window)
    assert result.is_drift
    assert min(result.p_values, key=result.p_values.get) == "acd_mm"  # type: ignore[arg-type]


def test_same_distribution_rarely_alarms() -> None:
    rng = np.random.default_rng(1)
    det = AlibiKSDetector(_reference(rng), ["wtw_mm", "acd_mm", "lt_mm"])
    alarms = sum(det.check(_reference(rng, 200)).is_drift for _ in range(40))
    assert alarms <= 5  # FDR at 0.05 across 3 features: about 2 false alarms in 40 windows expected


def test_bad_shapes_are_refused_with_a_reason() -> None:
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="at least 30 rows"):
        AlibiKSDetector(_reference(rng, 10), ["a", "b", "c"])
    det = AlibiKSDetector(_reference(rng), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        det.check(np.zeros((5, 2)))
