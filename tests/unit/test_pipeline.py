import base64

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput

from eyeops.errors import InvalidRequest
from eyeops.ocr.pipeline import PreparedExam, finish_exam
from eyeops.ocr.wire import ExamInput, exam_from_v1, exam_from_v2


def test_v1_parsing_and_refusals():
    image = b"\x89PNG\r\n\x1a\n..."
    body = {
        "instances": [
            {
                "image_b64": base64.b64encode(image).decode(),
                "device_kind": "autorefractor",
                "device_id": "ar-1",
                "patient_id": "P0000001",
            }
        ]
    }
    exam = exam_from_v1(body, "req")
    assert (exam.image, exam.device_kind, exam.device_id, exam.patient_id) == (
        image,
        "autorefractor",
        "ar-1",
        "P0000001",
    )
    for bad, says in [
        ({"instances": []}, "exactly one exam"),
        ({"instances": [{"device_kind": "x"}]}, "image_b64"),
        ({"instances": [{"image_b64": "AAAA"}]}, "device_kind"),
        ({"instances": [{"image_b64": "***", "device_kind": "x"}]}, "base64"),
        ({"instances": [{"image_b64": 5, "device_kind": "x"}]}, "base64 string"),
        ({"instances": [{"image_b64": "AAAA", "device_kind": "x", "exam_date": "14.03.2026"}]}, "YYYY-MM-DD"),
        ({"instances": [{"image_b64": "AAAA", "device_kind": "x", "exam_date": "20260314"}]}, "YYYY-MM-DD"),
        ({"instances": [{"image_b64": "AAAA", "device_kind": "x", "exam_date": "2026-02-30"}]}, "YYYY-MM-DD"),
        ([1, 2], "JSON object"),
        ("hello", "JSON object"),
        (None, "JSON object"),
        ({"instances": [{"image_b64": "AAAA", "device_kind": "x", "patient_id": "P" * 65}]}, "than 64"),
        ({"instances": [{"image_b64": "AAAA", "device_kind": "x", "patient_id": ["P1"]}]}, "a string"),
    ]:
        with pytest.raises(InvalidRequest, match=says):
            exam_from_v1(bad, None)


def test_v2_parsing_accepts_base64_and_raw_bytes():
    image = b"\xff\xd8\xff rest of a jpeg"
    as_json = InferInput("image", [1], "BYTES", data=[base64.b64encode(image).decode()])
    assert exam_from_v2([as_json], {"device_kind": "autorefractor"}, None).image == image
    hinted = exam_from_v2([as_json], {"device_kind": "autorefractor", "exam_date": "2026-03-14"}, None)
    assert hinted.exam_date == "2026-03-14"
    raw = InferInput("image", [1], "BYTES")
    raw.set_data_from_numpy(np.array([image], dtype=np.object_), binary_data=True)
    assert exam_from_v2([raw], {"device_kind": "autorefractor"}, None).image == image
    two = InferInput("image", [2], "BYTES")
    two.set_data_from_numpy(np.array([image, image], dtype=np.object_), binary_data=True)
    with pytest.raises(InvalidRequest, match="shape"):
        exam_from_v2([two], {"device_kind": "autorefractor"}, None)
    empty = InferInput("image", [1], "BYTES", data=[])
    with pytest.raises(InvalidRequest, match="cannot be read"):
        exam_from_v2([empty], {"device_kind": "autorefractor"}, None)
    with pytest.raises(InvalidRequest, match="device_kind"):
        exam_from_v2([as_json], {}, None)
    with pytest.raises(InvalidRequest, match="named 'image'"):
        exam_from_v2([InferInput("img", [1], "BYTES", data=["AA=="])], {"device_kind": "x"}, None)


def test_identity_mismatch_goes_to_review(layouts):
    layout = layouts["specular_microscope"]
    specs = list(layout.all_fields())
    exam = ExamInput(image=b"img", device_kind=layout.kind, patient_id="P7654321", laterality="OS")
    prepared = PreparedExam(exam, layout, specs, np.zeros((len(specs), 32, 128), np.uint8))
    texts = {
        "patient_id": "P1234567",
        "laterality": "OS",
        "exam_date": "2024-05-06",
        "ecd_cells_mm2": "2650",
        "cv_pct": "33",
        "hex_pct": "48",
        "cct_um": "520",
    }
    record = finish_exam(prepared, [(texts[s.name], 0.99) for s in specs], 0.9, "trocr", "1")
    fields = {f.name: f for f in record.fields}
    assert fields["patient_id"].status == "review" and fields["patient_id"].reason.startswith(
        "identity_mismatch"
    )
    assert fields["laterality"].status == "accepted"
    assert record.status == "review" and record.header["patient_id"] is None
    assert record.exam_id == exam.exam_id and len(record.exam_id) == 64


def test_exam_date_from_the_gateway_is_checked_against_the_header(layouts):
    layout = layouts["specular_microscope"]
    specs = list(layout.all_fields())
    texts = {
        "patient_id": "P1234567",
        "laterality": "OS",
        "exam_date": "2018-01-09",  # the screen says 2018-07-09; 7 read as 1 with confidence 0.997
        "ecd_cells_mm2": "2650",
        "cv_pct": "33",
        "hex_pct": "48",
        "cct_um": "520",
    }
    readings = [(texts[s.name], 0.997) for s in specs]

    def exam_date_field(hint):
        exam = ExamInput(image=b"img", device_kind=layout.kind, exam_date=hint)
        prepared = PreparedExam(exam, layout, specs, np.zeros((len(specs), 32, 128), np.uint8))
        return {f.name: f for f in finish_exam(prepared, readings, 0.97, "trocr", "1").fields}["exam_date"]

    caught = exam_date_field("2018-07-09")
    assert caught.status == "review"
    assert caught.reason == "identity_mismatch: image says '2018-01-09', gateway says '2018-07-09'"
    assert exam_date_field("2018-01-09").status == "accepted"
    assert exam_date_field(None).status == "accepted"  # no hint, nothing to compare


def test_a_second_recogniser_sends_less_confident_disagreements_to_review(layouts):
    """Readings below SECOND_OPINION_BELOW stand only where the other recogniser reads the same text;
    confident readings are not asked, fields in review are asked (agreement may lift them only with
    a calibration that says so), and a field the other recogniser could not read goes to review."""
    from eyeops.ocr.arbitrate import (
        SECOND_OPINION_BELOW,
        SECOND_OPINION_MISSING,
        SECOND_OPINION_REASON,
        needs_second,
    )
    from eyeops.ocr.pipeline import validate

    layout = layouts["specular_microscope"]
    specs = list(layout.all_fields())
    texts = {"patient_id": "P7654321", "laterality": "OS", "exam_date": "2024-05-06"}
    texts |= {"ecd_cells_mm2": "2650", "cv_pct": "33", "hex_pct": "48", "cct_um": "520"}
    exam = ExamInput(image=b"img", device_kind=layout.kind)
    prepared = PreparedExam(exam, layout, specs, np.zeros((len(specs), 32, 128), np.uint8))
    confidence = {s.name: 0.98 for s in specs} | {"cct_um": SECOND_OPINION_BELOW, "hex_pct": 0.5}
    recognitions = [(texts[s.name], confidence[s.name]) for s in specs]
    asked = needs_second(validate(prepared, recognitions, 0.97))
    assert "cct_um" not in asked and "hex_pct" in asked  # confident; in review, so asked
    assert {"ecd_cells_mm2", "cv_pct", "patient_id"} <= set(asked)
    other = {n: ("2680" if n == "ecd_cells_mm2" else texts[n], 0.9) for n in asked if n != "laterality"}
    record = finish_exam(prepared, recognitions, 0.97, "trocr", "1", other)
    fields = {f.name: f for f in record.fields}
    assert fields["ecd_cells_mm2"].status == "review"
    assert fields["ecd_cells_mm2"].reason == SECOND_OPINION_REASON
    assert fields["ecd_cells_mm2"].second_text == "2680" and fields["ecd_cells_mm2"].proposal in (
        "2650",
        "2680",
    )
    assert "2650" not in SECOND_OPINION_REASON  # the reason never carries a reading
    assert fields["cv_pct"].status == "accepted"  # both read 33
    assert fields["hex_pct"].status == "review" and fields["hex_pct"].reason != SECOND_OPINION_REASON
    assert fields["laterality"].reason == SECOND_OPINION_MISSING  # asked, not answered
    assert fields["cct_um"].status == "accepted"
    assert record.status == "review"
    # without a second opinion (switched off) nothing changes but validation's own verdicts
    alone = {f.name: f for f in finish_exam(prepared, recognitions, 0.97, "trocr", "1").fields}
    assert alone["ecd_cells_mm2"].status == "accepted" and alone["hex_pct"].status == "review"


def test_an_accepted_exam_keeps_the_crops_both_readers_read_alike_and_only_those(layouts):
    from eyeops.ocr.arbitrate import needs_second
    from eyeops.ocr.pipeline import exam_record, validate

    layout = layouts["specular_microscope"]
    specs = list(layout.all_fields())
    texts = {"patient_id": "P7654321", "laterality": "OS", "exam_date": "2024-05-06"}
    texts |= {"ecd_cells_mm2": "2650", "cv_pct": "33", "hex_pct": "48", "cct_um": "520"}
    crops = np.stack([np.full((32, 128), i, np.uint8) for i in range(len(specs))])
    prepared = PreparedExam(ExamInput(image=b"img", device_kind=layout.kind), layout, specs, crops)
    readings = validate(prepared, [(texts[s.name], 0.98) for s in specs], 0.97)
    asked = needs_second(readings)
    second = {n: (texts[n], 0.99) for n in asked if n != "cv_pct"}  # cv_pct: asked, not answered
    record = exam_record(prepared, readings, "trocr", "1", second, asked, keep_crops=True)
    assert record.status == "review" and record.learning_crops == {}  # a person looks: nothing kept
    second["cv_pct"] = ("33", 0.99)
    record = exam_record(prepared, readings, "trocr", "1", second, asked, keep_crops=True)
    assert record.status == "accepted" and set(record.learning_crops) == set(asked)
    index = [s.name for s in specs].index("cct_um")
    grammar, crop = record.learning_crops["cct_um"]
    assert grammar == specs[index].grammar and crop == crops[index].tobytes()
    assert "learning_crops" not in record.to_dict()  # never answered
    assert exam_record(prepared, readings, "trocr", "1", second, asked).learning_crops == {}
