"""Field parsing against the OCR failure modes of DOMAIN.md §2, and the cross-field checks."""

import numpy as np
import pytest

from eyeops.fields import FieldReading, apply_cross_checks, check_holds, parse_field, read_fields

T = 0.9


def reason(layouts, kind, name, text, conf=0.99):
    r = parse_field(layouts[kind].field(name), text, conf, T)
    return r.status, (r.reason or "").split(":")[0], r.value


def test_accepts_a_clean_reading(layouts):
    assert reason(layouts, "optical_biometer", "al_mm", "24.35") == ("accepted", "", 24.35)


@pytest.mark.parametrize(
    ("kind", "name", "text", "why"),
    [
        ("optical_biometer", "al_mm", "2435", "grammar"),  # lost decimal point
        ("optical_biometer", "al_mm", "24.351", "grammar"),  # hallucinated trailing digit
        ("optical_biometer", "al_mm", "24.35mm", "grammar"),  # trailing junk
        ("optical_biometer", "al_mm", "74.35", "out_of_range"),  # 2 → 7
        ("autorefractor", "cyl_d", "1.25", "out_of_range"),  # lost minus sign: cylinder is ≤ 0
        ("autorefractor", "cyl_d", "+1.25", "out_of_range"),  # cylinder is minus-cylinder: ≤ 0
        ("autorefractor", "sphere_d", "-2.30", "off_step"),  # off the 0.25 D grid (5 ↔ 3, 0 ↔ 8 ...)
        ("specular_microscope", "ecd_cells_mm2", "8732", "out_of_range"),  # 2 → 8
        ("optical_biometer", "exam_date", "31.02.2020", "invalid_date"),
        ("optical_biometer", "laterality", "0D", "grammar"),
        ("optical_biometer", "al_mm", "", "grammar"),
    ],
)
def test_failure_modes_go_to_review(layouts, kind, name, text, why):
    status, got, _ = reason(layouts, kind, name, text)
    assert (status, got) == ("review", why)


def test_cylinder_without_sign_is_refused(layouts):
    # The autorefractor prints an explicit sign; its grammar admits an unsigned value, but ≤ 0 does not
    spec = layouts["autorefractor"].field("cyl_d")
    assert parse_field(spec, "-1.25", 0.99, T).status == "accepted"
    assert parse_field(spec, "1.25", 0.99, T).status == "review"


def test_low_confidence_goes_to_review_with_value(layouts):
    r = parse_field(layouts["optical_biometer"].field("al_mm"), "24.35", 0.5, T)
    assert r.status == "review" and r.reason.startswith("low_confidence") and r.value == 24.35


def test_a_confidence_just_below_the_bar_never_reads_as_equal_to_it(layouts):
    """Issue 31, item 6: three decimals made 0.9695 read "0.970 < 0.97"."""
    spec = layouts["optical_biometer"].field("al_mm")
    assert parse_field(spec, "24.35", 0.5, 0.97).reason == "low_confidence: 0.500 < 0.97"
    assert parse_field(spec, "24.35", 0.9695, 0.97).reason == "low_confidence: 0.9695 < 0.97"
    assert parse_field(spec, "24.35", 0.96999991, 0.97).reason == "low_confidence: 0.9699999 < 0.97"


def test_blank_optional_vault_is_accepted_as_missing(layouts):
    r = parse_field(layouts["anterior_segment_oct"].field("vault_um"), "---", 0.99, T)
    assert (r.status, r.value) == ("accepted", None)


def test_date_is_normalised_to_iso(layouts):
    r = parse_field(layouts["autorefractor"].field("exam_date"), "03/11/2024", 0.99, T)
    assert r.value == "2024-11-03"


def _texts(pairs):
    return {k: (v, 0.99) for k, v in pairs.items()}


HEADER = {"patient_id": "P1234567", "laterality": "OD"}


def test_k2_below_k1_sends_both_to_review(layouts):
    layout = layouts["optical_biometer"]
    texts = _texts(
        {
            **HEADER,
            "exam_date": "01.02.2023",
            "al_mm": "24.10",
            "acd_mm": "3.10",
            "lt_mm": "4.50",
            "wtw_mm": "11.8",
            "k1_d": "44.80",
            "k2_d": "44.10",
            "cct_um": "540",
        }
    )
    out = {r.name: r for r in read_fields(layout, texts, T)}
    assert out["k1_d"].status == out["k2_d"].status == "review"
    assert out["k1_d"].reason.startswith("cross_check")
    assert out["al_mm"].status == "accepted"


def test_keratometry_from_radius(layouts):
    layout = layouts["autorefractor"]
    base = {
        **HEADER,
        "exam_date": "01/02/2023",
        "sphere_d": "-3.25",
        "cyl_d": "-0.75",
        "axis_deg": "90",
        "r1_mm": "7.80",
        "r2_mm": "7.60",
        "k1_d": "43.27",
        "k2_d": "44.41",
    }
    assert all(r.status == "accepted" for r in read_fields(layout, _texts(base), T))
    wrong = {**base, "k1_d": "48.27"}  # 3 → 8 in K1: 337.5 / 7.80 = 43.27
    out = {r.name: r for r in read_fields(layout, _texts(wrong), T)}
    assert out["k1_d"].status == "review" and out["r1_mm"].status == "review"


@pytest.mark.parametrize("radius", [6.5, 7.08, 7.8, 9.0])
def test_keratometry_allows_display_rounding_and_nothing_more(layouts, radius):
    """A device divides by the radius it measured and shows both rounded to 0.01: every such pair
    passes. A misread last digit of K outside that slack (47.67 read as 47.61, seen in evaluation)
    goes to review."""
    check = layouts["autorefractor"].checks[0]
    layout = layouts["autorefractor"]
    measured = radius + np.linspace(-0.005, 0.00499, 41)  # what the device measured, shown as radius
    for r in measured:
        pair = {"k1_d": round(337.5 / r, 2), "r1_mm": radius}
        assert check_holds(check, pair, layout), pair
    shown = round(337.5 / radius, 2)
    slack = 0.005 + 337.5 * 0.005 / (radius * (radius - 0.005))
    for misread in (shown + 0.01 * d for d in range(-9, 10)):
        pair = {"k1_d": misread, "r1_mm": radius}
        outside = abs(misread - 337.5 / radius) > slack + 1e-9
        assert check_holds(check, pair, layout) is not outside, pair
    assert not check_holds(check, {"k1_d": 47.61, "r1_mm": 7.08}, layout)


def test_mean_of_readings(layouts):
    layout = layouts["noncontact_tonometer"]
    base = {**HEADER, "exam_date": "01.02.2023", "iop1_mmhg": "14", "iop2_mmhg": "15", "iop3_mmhg": "16"}
    ok = read_fields(layout, _texts({**base, "iop_mmhg": "15.0"}), T)
    assert all(r.status == "accepted" for r in ok)
    bad = {r.name: r for r in read_fields(layout, _texts({**base, "iop_mmhg": "17.0"}), T)}  # 5 → 7
    assert bad["iop_mmhg"].status == "review" and bad["iop1_mmhg"].reason.startswith("cross_check")


def test_missing_field_is_review_not_dropped(layouts):
    layout = layouts["specular_microscope"]
    out = read_fields(layout, {"patient_id": ("P1234567", 0.99)}, T)
    assert len(out) == len(list(layout.all_fields()))
    assert {r.reason for r in out if r.name != "patient_id"} == {"missing: not recognised"}


def test_cross_check_skips_unreadable_members(layouts):
    layout = layouts["optical_biometer"]
    readings = [
        FieldReading("k1_d", "4x.10", None, "D", 0.99, "review", "grammar"),
        FieldReading("k2_d", "44.10", 44.10, "D", 0.99, "accepted", None),
    ]
    out = apply_cross_checks(layout, readings)
    assert out[1].status == "accepted"
