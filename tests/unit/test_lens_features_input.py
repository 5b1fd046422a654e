"""Lens feature input checks: what a refusal says (issue 28, item 10: never the measurement)."""

from __future__ import annotations

import pytest

from eyeops.lens.features import BASE_FEATURES, PLAUSIBLE, ImplausibleFeatures, frame_from_instances


def plausible_row() -> dict[str, float]:
    return {name: (PLAUSIBLE[name][0] + PLAUSIBLE[name][1]) / 2 for name in BASE_FEATURES}


@pytest.mark.parametrize(("value", "side"), [(9.137, "above"), (0.4213, "below")])
def test_an_implausible_value_is_refused_without_being_echoed(value: float, side: str) -> None:
    row = {**plausible_row(), "acd_mm": value}
    with pytest.raises(ImplausibleFeatures) as info:
        frame_from_instances([row])
    message = info.value.message
    assert "acd_mm" in message and side in message and "2.0–4.5" in message
    assert str(value) not in message
    assert info.value.status_code == 422
