import base64

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput

from eyeops.errors import InvalidRequest
from eyeops.ocr.pipeline import ExamInput, PreparedExam, finish_exam
from inference.ocr_transformer.requests import exam_from_v1, exam_from_v2

pytestmark = pytest.mark.unit


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
    ]:
        with pytest.raises(InvalidRequest, match=says):
            exam_from_v1(bad, None)


def test_v2_parsing_accepts_base64_and_raw_bytes():
    image = b"\xff\xd8\xff rest of a jpeg"
    as_json = InferInput("image", [1], "BYTES", data=[base64.b64encode(image).decode()])
    assert exam_from_v2([as_json], {"device_kind": "autorefractor"}, None).image == image
    raw = InferInput("image", [1], "BYTES")
    raw.set_data_from_numpy(np.array([image], dtype=np.object_), binary_data=True)
    assert exam_from_v2([raw], {"device_kind": "autorefractor"}, None).image == image
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
