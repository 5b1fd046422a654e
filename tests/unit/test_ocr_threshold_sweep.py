"""The evaluation's threshold sweep: review and silent-error counts recomputed through the service's
own validation at each confidence threshold."""

from eyeops.fields import read_fields
from eyeops.ocr.evaluate import EvalRun
from eyeops.ocr.scorecard import Scorecard, Tally, outcomes_at
from eyeops.synth.render import RenderedExam

TRUTH = {
    "patient_id": "P1234567",
    "laterality": "OD",
    "exam_date": "01.02.2023",
    "iop1_mmhg": "14",
    "iop2_mmhg": "15",
    "iop3_mmhg": "16",
    "iop_mmhg": "15.0",
}


def test_outcomes_follow_the_threshold(layouts):
    layout = layouts["noncontact_tonometer"]
    read = {name: (text, 0.999) for name, text in TRUTH.items()}
    read["patient_id"] = ("P1234557", 0.999)  # wrong and confident: silent at every threshold
    read["exam_date"] = ("01.02.2028", 0.96)  # wrong, less sure: caught from 0.97 up
    read["laterality"] = ("OD", 0.93)  # right but unsure: review from 0.95 up, never an error
    got = outcomes_at(layout, TRUTH, read, (0.9, 0.95, 0.97))
    assert got == {0.9: (0, 2), 0.95: (1, 2), 0.97: (2, 1)}


def test_a_cross_check_catches_what_confidence_does_not(layouts):
    layout = layouts["noncontact_tonometer"]
    read = {name: (text, 0.999) for name, text in TRUTH.items()}
    read["iop1_mmhg"] = ("17", 0.999)  # 4 -> 7: the mean no longer holds, all four go to review
    assert outcomes_at(layout, TRUTH, read, (0.5,)) == {0.5: (4, 0)}


def test_an_unaligned_exam_is_all_review(layouts):
    assert outcomes_at(layouts["noncontact_tonometer"], TRUTH, {}, (0.9,)) == {0.9: (len(TRUTH), 0)}


def test_tally_reports_rates_per_threshold():
    tally = Tally(fields=20)
    tally.add_sweep({0.9: (1, 2), 0.97: (3, 0)})
    tally.add_sweep({0.9: (1, 0), 0.97: (1, 0)})
    assert tally.rates()["thresholds"] == {
        "0.9": {"review_rate": 0.1, "silent_error_rate": 0.1},
        "0.97": {"review_rate": 0.2, "silent_error_rate": 0.0},
    }


def test_scoring_a_served_answer_lists_wrong_fields_and_sweeps(layouts):
    read = {name: (text, 0.999) for name, text in TRUTH.items()}
    read["patient_id"] = ("P1234557", 0.999)
    read["exam_date"] = ("01.02.2028", 0.96)
    answer = {"fields": [r.to_dict() for r in read_fields(layouts["noncontact_tonometer"], read, 0.97)]}
    exam = RenderedExam("noncontact_tonometer", b"", TRUTH, {}, style=None)
    run = EvalRun(Scorecard(layouts))
    run.score(exam, answer)
    summary = run.summary()
    assert summary["silent_error_rate"] == summary["thresholds"]["0.97"]["silent_error_rate"] == 1 / 7
    assert summary["thresholds"]["0.9"]["silent_error_rate"] == 2 / 7
    assert [(w["field"], w["status"]) for w in summary["wrong_fields"]] == [
        ("patient_id", "accepted"),
        ("exam_date", "review"),
    ]
    assert (
        summary["wrong_fields"][0]["raw_text"] == "P1234557"
        and summary["wrong_fields"][0]["truth"] == "P1234567"
    )
