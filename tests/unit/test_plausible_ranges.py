"""One contract between the device layouts and the lens: every value the OCR service accepts without
a person, for a field that feeds a lens feature, is one the lens takes.

The two ranges mean different things and both stay: a layout's `range` is what that device's reading
is accepted at without a person (outside it, a person checks the reading); the lens's `PLAUSIBLE`
(eyeops/lens/features.py) is what it refuses to predict from (422). The first must lie inside the
second, or the lens refuses exams the OCR service validated. Each feature has one source
(eyeops/features/views.py names the device kind), so this is checked pair by pair."""

from __future__ import annotations

import pytest

from eyeops.devices.layout import load_layouts
from eyeops.features.views import VIEWS
from eyeops.lens.features import BASE_FEATURES, PLAUSIBLE, ImplausibleFeatures, frame_from_instances

# Fields where a device rightly reads more than the lens takes: the lens refuses these eyes as outside
# its domain (the message says so), not as misreads. Nothing else may differ.
BEYOND_THE_MODEL = {("autorefractor", "sphere_d")}

SOURCED = [
    (kind, column)
    for view, (kind, columns) in VIEWS.items()
    if kind != "registry"  # demographics come from the clinic's registry, not a screen
    for column in columns
    if column in BASE_FEATURES and column in PLAUSIBLE
]


def test_every_lens_feature_read_from_a_screen_has_a_source_field() -> None:
    layouts = load_layouts(extra=[])
    assert len(SOURCED) >= 10
    for kind, column in SOURCED:
        assert column in {f.name for f in layouts[kind].all_fields()}, f"{kind} shows no {column}"


@pytest.mark.parametrize(("kind", "column"), SOURCED, ids=[f"{k}.{c}" for k, c in SOURCED])
def test_what_a_device_accepts_without_a_person_the_lens_takes(kind: str, column: str) -> None:
    spec = load_layouts(extra=[])[kind].field(column)
    assert spec.range is not None
    low, high = spec.range
    plausible_low, plausible_high = PLAUSIBLE[column]
    if (kind, column) in BEYOND_THE_MODEL:
        assert low <= plausible_low and plausible_high <= high  # the device reads all the lens takes
        with pytest.raises(ImplausibleFeatures, match="outside what the model learnt from"):
            eye = {f: (PLAUSIBLE[f][0] + PLAUSIBLE[f][1]) / 2 for f in BASE_FEATURES}
            frame_from_instances([{**eye, column: high}])
        return
    assert plausible_low <= low and high <= plausible_high, (
        f"{kind}.{column} accepts {low}–{high}; the lens refuses outside {plausible_low}–{plausible_high}"
    )
