import re

import numpy as np
import pytest
import torch

from eyeops.ocr.decode import GrammarAutomaton, recognize
from eyeops.ocr.model import Recognizer, build_model
from eyeops.ocr.vocab import EOS, CharVocab

pytestmark = pytest.mark.unit


def test_vocab_round_trip_and_refusal():
    vocab = CharVocab()
    assert vocab.decode(vocab.encode("P1234567")) == "P1234567"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("24,35")


def test_automaton_allows_exactly_the_grammar():
    vocab = CharVocab()
    auto = GrammarAutomaton(r"-?\d{1,2}\.\d{2}", vocab)
    start = set(auto.allowed(auto.initial))
    assert start == {vocab.token_id(c) for c in "-0123456789"}
    state = auto.moves[auto.initial][vocab.token_id("4")]
    assert vocab.token_id(".") in auto.allowed(state) and EOS not in auto.allowed(state)


def test_constrained_output_of_an_untrained_model_is_always_grammatical():
    torch.manual_seed(0)
    vocab = CharVocab()
    recognizer = Recognizer(build_model(vocab), vocab, None, "test")
    crops = np.random.default_rng(0).integers(0, 255, size=(12, 32, 128)).astype(np.uint8)
    grammars = [r"\d{1,2}\.\d{2}", "OD|OS", r"P\d{7}", r"\d{2}\.\d{2}\.\d{4}"] * 3
    results = recognize(recognizer, crops, grammars)
    for r, g in zip(results, grammars, strict=True):
        assert re.fullmatch(g, r.text), (r.text, g)
        assert all(0.0 <= c <= 1.0 for c in r.token_confidences)
        assert len(r.token_confidences) == len(r.text) + 1  # end token included
    assert recognize(recognizer, crops[:0], []) == []
