"""A seventh device kind from one sample export: onboard, register later exams to it, refuse what
cannot define a device."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw, ImageFont

from eyeops.align import align
from eyeops.devices.layout import load_layouts
from eyeops.devices.onboard import OnboardingError, onboard
from eyeops.errors import AlignmentFailed
from eyeops.synth.fonts import font_paths

W, H = 900, 600
BOXES = {
    "patient_id": (150, 90, 190, 40),
    "laterality": (430, 90, 90, 40),
    "exam_date": (650, 90, 200, 40),
    "sphere_d": (260, 200, 160, 40),
    "cylinder_d": (260, 270, 160, 40),
    "axis_deg": (260, 340, 160, 40),
    "prism_d": (260, 410, 160, 40),
}
LAYOUT = {
    "kind": "lensmeter",
    "description": "Lensmeter (a device no layout of the project draws)",
    "template": {"width": W, "height": H, "value_align": "left"},
    "header": [
        {
            "name": "patient_id",
            "label": "ID",
            "kind": "text",
            "pattern": r"P\d{7}",
            "box": BOXES["patient_id"],
        },
        {
            "name": "laterality",
            "label": "Eye",
            "kind": "text",
            "pattern": "OD|OS",
            "box": BOXES["laterality"],
        },
        {
            "name": "exam_date",
            "label": "Date",
            "kind": "date",
            "pattern": r"\d{4}-\d{2}-\d{2}",
            "date_format": "%Y-%m-%d",
            "box": BOXES["exam_date"],
        },
    ],
    "fields": [
        {
            "name": "sphere_d",
            "label": "SPH",
            "unit": "D",
            "decimals": 2,
            "range": [-25, 25],
            "box": BOXES["sphere_d"],
        },
        {
            "name": "cylinder_d",
            "label": "CYL",
            "unit": "D",
            "decimals": 2,
            "range": [-10, 0],
            "box": BOXES["cylinder_d"],
        },
        {"name": "axis_deg", "label": "AXIS", "unit": "deg", "range": [0, 180], "box": BOXES["axis_deg"]},
        {
            "name": "prism_d",
            "label": "PRISM",
            "unit": "D",
            "decimals": 1,
            "range": [0, 10],
            "box": BOXES["prism_d"],
        },
    ],
}


def draw_lensmeter(values: dict[str, str]) -> np.ndarray:
    """The device's own screen: a header band, a logo, ruled lines, labels and values; no frame."""
    font = ImageFont.truetype(str(font_paths("train")[0]), 24)
    small = ImageFont.truetype(str(font_paths("train")[0]), 16)
    img = Image.new("L", (W, H), 245)
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, W, 60), fill=60)
    d.text((20, 16), "LENSMETER  LM-9  digital", fill=240, font=font)
    d.ellipse((760, 220, 880, 340), outline=80, width=3)
    d.line((770, 280, 870, 280), fill=80, width=2)
    d.line((820, 230, 820, 330), fill=80, width=2)
    for y in (150, 480):
        d.line((20, y, W - 20, y), fill=120, width=2)
    labels = {
        "patient_id": "ID",
        "laterality": "Eye",
        "exam_date": "Date",
        "sphere_d": "SPH",
        "cylinder_d": "CYL",
    }
    labels |= {"axis_deg": "AXIS", "prism_d": "PRISM"}
    for name, (x, y, _, _) in BOXES.items():
        d.text(
            (x - 12 - d.textlength(labels[name], font=small) - (60 if y > 150 else 0), y + 10),
            labels[name],
            fill=70,
            font=small,
        )
        d.text((x + 8, y + 6), values[name], fill=20, font=font)
    d.text((20, 520), "Calibrated 2026-01  |  serial 0042-17", fill=110, font=small)
    return np.asarray(img)


VALUES = {"patient_id": "P1234567", "laterality": "OD", "exam_date": "2026-11-02", "sphere_d": "-3.25"}
VALUES |= {"cylinder_d": "-1.50", "axis_deg": "90", "prism_d": "0.5"}


@pytest.fixture
def onboarded(tmp_path: Path) -> Path:
    cv2.imwrite(str(tmp_path / "sample.png"), draw_lensmeter(VALUES))
    (tmp_path / "lensmeter.yaml").write_text(yaml.safe_dump(LAYOUT))
    out = tmp_path / "layouts"
    done = onboard("lensmeter", tmp_path / "sample.png", tmp_path / "lensmeter.yaml", out)
    assert done.reference.is_file() and done.preview.is_file() and done.keypoints >= 150
    return out


def test_nothing_written_keeps_the_samples_values(onboarded: Path) -> None:
    """Issue 28, item 10: the preview on the models volume was drawn over the unmasked sample, so
    the patient's id, date and measurements stayed readable there."""
    sample = draw_lensmeter(VALUES)
    for name in ("lensmeter.reference.png", "lensmeter.preview.png"):
        grey = cv2.imread(str(onboarded / name), cv2.IMREAD_GRAYSCALE)
        assert grey is not None and grey.shape == sample.shape
        for x, y, w, h in BOXES.values():
            inside = (slice(y + 3, y + h - 3), slice(x + 3, x + w - 3))  # within the drawn outline
            assert np.ptp(grey[inside]) <= 2, name  # one flat grey: no digit left
            assert np.ptp(sample[inside]) > 60  # while the sample shows its value there


def test_an_onboarded_device_is_registered_to_its_reference_under_a_phone_photo(onboarded: Path) -> None:
    layout = load_layouts(extra=[onboarded])["lensmeter"]
    other = dict(VALUES, patient_id="P7654321", sphere_d="+1.75", axis_deg="175")
    screen = draw_lensmeter(other)
    src = np.float32([[0, 0], [W, 0], [W, H], [0, H]])
    dst = np.float32([[60, 40], [W + 20, 85], [W - 10, H + 70], [35, H + 30]])  # tilt, turn, perspective
    truth = cv2.getPerspectiveTransform(src, dst)
    photo = cv2.warpPerspective(screen, truth, (W + 80, H + 120), borderValue=90)
    ramp = np.linspace(0.65, 1.1, photo.shape[1])[None, :]  # uneven light
    photo = np.clip(photo * ramp, 0, 255).astype(np.uint8)
    photo = cv2.GaussianBlur(photo, (0, 0), 1.0)
    ok, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 55])
    assert ok
    found = align(cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE), layout)
    assert found.method == "reference"
    assert found.score == 1.0
    centres = np.array([[[x + w / 2, y + h / 2] for x, y, w, h in BOXES.values()]], np.float64)
    error = cv2.perspectiveTransform(centres, found.matrix) - cv2.perspectiveTransform(centres, truth)
    assert np.abs(error).max() <= 3.0  # picture pixels; the boxes are 40 high


def test_an_exam_of_another_device_is_refused_by_the_onboarded_kind(onboarded: Path) -> None:
    layout = load_layouts(extra=[onboarded])["lensmeter"]
    blank = np.full((H, W), 245, np.uint8)
    with pytest.raises(AlignmentFailed, match="quality"):
        align(blank, layout)


def test_a_box_off_the_sample_is_named(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "sample.png"), draw_lensmeter(VALUES))
    bad = yaml.safe_load(yaml.safe_dump(LAYOUT))
    bad["fields"][2]["box"] = [850, 340, 160, 40]
    (tmp_path / "lensmeter.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(OnboardingError, match=r"axis_deg.*falls off the 900×600 sample"):
        onboard("lensmeter", tmp_path / "sample.png", tmp_path / "lensmeter.yaml", tmp_path / "out")
    assert not (tmp_path / "out" / "lensmeter.yaml").exists()


def test_a_sample_without_static_content_is_refused(tmp_path: Path) -> None:
    bare = np.full((H, W), 245, np.uint8)
    cv2.putText(bare, "-3.25", (268, 230), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 20, 2)
    cv2.imwrite(str(tmp_path / "sample.png"), bare)
    (tmp_path / "lensmeter.yaml").write_text(yaml.safe_dump(LAYOUT))
    with pytest.raises(OnboardingError, match="too little static content"):
        onboard("lensmeter", tmp_path / "sample.png", tmp_path / "lensmeter.yaml", tmp_path / "out")
    assert list((tmp_path / "out").glob("*")) == []


def test_a_sample_of_another_size_and_a_wrong_format_are_refused(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "sample.png"), cv2.resize(draw_lensmeter(VALUES), (450, 300)))
    (tmp_path / "lensmeter.yaml").write_text(yaml.safe_dump(LAYOUT))
    with pytest.raises(OnboardingError, match="450×300 pixels but the layout's template says 900×600"):
        onboard("lensmeter", tmp_path / "sample.png", tmp_path / "lensmeter.yaml", tmp_path / "out")
    (tmp_path / "sample.gif").write_bytes(b"GIF89a")
    with pytest.raises(OnboardingError, match="PNG, JPEG, TIFF or DICOM"):
        onboard("lensmeter", tmp_path / "sample.gif", tmp_path / "lensmeter.yaml", tmp_path / "out")


def test_the_cli_onboards_lists_and_previews(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from eyeops.cli import main

    cv2.imwrite(str(tmp_path / "sample.png"), draw_lensmeter(VALUES))
    (tmp_path / "lensmeter.yaml").write_text(yaml.safe_dump(LAYOUT))
    out = tmp_path / "layouts"
    argv = ["devices", "onboard", "--kind", "lensmeter", "--sample", str(tmp_path / "sample.png")]
    assert main([*argv, "--layout", str(tmp_path / "lensmeter.yaml"), "--out", str(out)]) == 0
    assert "EYEOPS_LAYOUT_DIRS=" in capsys.readouterr().out
    monkeypatch.setenv("EYEOPS_LAYOUT_DIRS", str(out))
    assert main(["devices", "list"]) == 0
    assert "lensmeter" in capsys.readouterr().out
    assert main(["devices", "preview", "lensmeter", "--out", str(tmp_path / "p.png")]) == 0
    assert cv2.imread(str(tmp_path / "p.png")).shape == (H, W, 3)
    assert (
        main(
            [
                "devices",
                "onboard",
                "--kind",
                "lensmeter",
                "--sample",
                str(tmp_path / "nope.png"),
                "--layout",
                "x.yaml",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_training_exams_are_drawn_on_the_onboarded_reference(onboarded: Path) -> None:
    """Item 3 of the OCR issue: new legal values written into the device's own reference image,
    damaged, then aligned and cropped as served: every crop holds its field's new value."""
    import re

    from eyeops.ocr.dataset import build_crop_set
    from eyeops.synth.reference import NoReferenceImage, reference_image, render_on_reference

    layouts = load_layouts(extra=[onboarded])
    layout = layouts["lensmeter"]
    reference = reference_image(layout)
    texts = dict(VALUES, patient_id="P7654321", sphere_d="+11.75")
    drawn, _ = render_on_reference(layout, texts, np.random.default_rng(4))
    assert drawn.shape[0] >= reference.shape[0] * 0.5  # a photo of the screen, maybe warped
    data = build_crop_set(
        type(layouts)({"lensmeter": layout}), 12, seed=3, split="train", workers=1, variety="reference"
    )
    assert len(data) >= 7 * 8  # at least 8 of 12 damaged exams aligned well enough to keep
    assert set(data.fields) == set(BOXES)
    for text, grammar in zip(data.texts, data.grammars, strict=True):
        assert re.fullmatch(grammar, text), (text, grammar)
    # the crops are the new values' ink on the reference's blank box, not the sample's old values
    ink = [float(crop.std()) for crop in data.crops]
    assert np.median(ink) > 20
    with pytest.raises(NoReferenceImage, match="onboard it"):
        reference_image(layouts["autorefractor"])


def test_a_dicom_sample_onboards_like_its_png(tmp_path: Path) -> None:
    from tests.helpers import dicom_bytes

    sample = draw_lensmeter(VALUES)
    (tmp_path / "sample.dcm").write_bytes(dicom_bytes(sample))
    cv2.imwrite(str(tmp_path / "sample.png"), sample)
    (tmp_path / "lensmeter.yaml").write_text(yaml.safe_dump(LAYOUT))
    from_dicom = onboard("lensmeter", tmp_path / "sample.dcm", tmp_path / "lensmeter.yaml", tmp_path / "a")
    from_png = onboard("lensmeter", tmp_path / "sample.png", tmp_path / "lensmeter.yaml", tmp_path / "b")
    # DICOM pixels are stretched to 0-255: nearly the same image, nearly the same static content.
    assert (
        from_png.keypoints >= 150
        and abs(from_dicom.keypoints - from_png.keypoints) < 0.05 * from_png.keypoints
    )
    a, b = (cv2.imread(str(o.reference), cv2.IMREAD_GRAYSCALE).astype(int) for o in (from_dicom, from_png))
    assert a.shape == b.shape and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_a_sample_named_dcm_that_is_not_dicom_is_refused_with_the_reason(tmp_path: Path) -> None:
    """Found by the console fuzz: pydicom's own error escaped as a 500 from the Devices page."""
    from eyeops.devices.onboard import read_sample

    for name, data in (("a.dcm", b"not dicom at all"), ("b.dcm", b"\x00" * 128 + b"DICM" + b"\x02" * 40)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(OnboardingError, match="not a readable DICOM image"):
            read_sample(tmp_path / name)
