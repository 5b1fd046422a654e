"""Values drawn uniformly from each field's grammar: only texts the grammar allows, and every length
and every character at every position it allows (no prior over values)."""

import re
from collections import defaultdict

import numpy as np
import pytest

from eyeops.synth.values import exam_values, grammar_text


def test_grammar_texts_cover_every_length_and_every_digit_at_every_position(layouts):
    rng = np.random.default_rng(0)
    grammars = {spec.grammar for layout in layouts for spec in layout.all_fields()}
    for grammar in grammars:
        texts = [grammar_text(grammar, rng) for _ in range(1500)]
        assert all(re.fullmatch(grammar, t) for t in texts), grammar
        seen: dict[tuple[int, int], set[str]] = defaultdict(set)
        for t in texts:
            for i, c in enumerate(t):
                seen[len(t), i].add(c)
        lengths = {len(t) for t in texts}
        if grammar == r"\d{1,4}":
            assert lengths == {1, 2, 3, 4}
        for (length, position), chars in seen.items():
            # a position that holds digits holds every digit (a date's 0 and 1 as much as its 9)
            if len(chars & set("0123456789")) > 1:
                assert chars >= set("0123456789"), (grammar, length, position, chars)


def test_an_exam_in_grammar_mode_shows_texts_from_every_fields_grammar(layouts):
    rng = np.random.default_rng(1)
    layout = layouts["optical_biometer"]
    values, texts = exam_values(layout, rng, "grammar")
    assert set(texts) == {s.name for s in layout.all_fields()}
    for spec in layout.all_fields():
        assert re.fullmatch(spec.grammar, texts[spec.name])
    al = layout.field("al_mm")
    assert values["al_mm"] == float(texts["al_mm"]) and al.kind == "number"
    # realistic mode is what it was: values in range, formatted as the device prints them
    values, texts = exam_values(layout, np.random.default_rng(1), "realistic")
    lo, hi = al.range  # type: ignore[misc]
    assert lo <= float(texts["al_mm"]) <= hi


def test_grammar_text_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match="does not draw"):
        grammar_text(r"\w+", np.random.default_rng(0))
