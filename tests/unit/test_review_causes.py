"""bench.review_causes sorts the fields in review by cause and counts what a third vote would do."""

from __future__ import annotations

from typing import Any

from bench.review_causes import causes


def row(
    exam: int, text: str, second: str, truth: str, status: str, reason: str = "", tess: str = ""
) -> dict[str, Any]:
    return {
        "exam": exam, "field": f"f{text}", "text": text, "second_text": second, "truth": truth,
        "served_status": status, "reason": reason, "tesseract_text": tess or None,
    }  # fmt: skip


def test_fields_in_review_by_cause_and_the_third_vote() -> None:
    rows = [
        row(0, "1", "1", "1", "accepted"),  # an exam nothing held back
        row(1, "2", "2", "2", "review", "low_confidence: 0.9 < 0.995", tess="2"),  # agreeing, all three
        row(2, "3", "3", "8", "review", "low_confidence: 0.9 < 0.995", tess="3"),  # all three wrong alike
        row(3, "4", "5", "5", "review", "low_confidence: 0.8 < 0.995"),  # TrOCR wrong, PP-OCR right
        row(3, "6", "6", "6", "review", "low_confidence: 0.9 < 0.995", tess="0"),
        row(4, "7", "1", "7", "review", "out_of_range: 7 not in [10, 20]"),
    ]
    got = causes(rows)
    assert got["aligned_exams"] == 5 and got["accepted"] == 1
    assert got["fields_in_review"] == {
        "agree, right": 2, "agree, WRONG": 1, "disagree, TrOCR wrong": 1, "a check failed": 1,
    }  # fmt: skip
    assert got["exams_held_only_by_agreeing_fields"] == 2  # exams 1 and 2; 3 holds a disagreement
    assert got["of_which_tesseract_agrees_on_every_field"] == 2
    assert got["of_which_a_field_is_wrong"] == 1  # exam 2: three readers, one wrong value
