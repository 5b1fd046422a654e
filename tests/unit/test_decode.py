import re

import numpy as np
import pytest
import torch

from eyeops.ocr.decode import GrammarAutomaton, recognize
from eyeops.ocr.model import Recognizer, build_model
from eyeops.ocr.vocab import EOS, CharVocab


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


def _pair(below: float) -> tuple[Recognizer, Recognizer, Recognizer]:
    vocab = CharVocab()
    torch.manual_seed(1)
    first = Recognizer(build_model(vocab), vocab, None, "a")
    torch.manual_seed(2)
    second = Recognizer(build_model(vocab), vocab, None, "b")
    return first, second, Recognizer(first.model, vocab, None, "a", fallback=second, fallback_below=below)


def test_a_fallback_rereads_the_doubtful_crops_and_the_more_confident_reading_stands():
    from eyeops.ocr.decode import decode

    crops = np.random.default_rng(3).integers(0, 255, size=(16, 32, 128)).astype(np.uint8)
    grammars = [r"\d{1,2}\.\d{2}", "OD|OS", r"P\d{7}", r"\d{2}\.\d{2}\.\d{4}"] * 4
    first, second, pair = _pair(below=1.0)
    alone, other = decode(first, crops, grammars), decode(second, crops, grammars)
    both = recognize(pair, crops, grammars)
    assert pair.version == "a+b"
    assert both == [max(x, y, key=lambda r: r.confidence) for x, y in zip(alone, other, strict=True)]
    assert both != alone and both != other  # each model wins some crops with these seeds
    # no crop below the threshold: the fallback never reads, the first model's readings stand
    assert recognize(_pair(below=0.0)[2], crops, grammars) == alone


def test_a_checkpoint_carries_its_fallback(tmp_path):
    from eyeops.errors import CheckpointError
    from eyeops.ocr.model import attach_fallback, load_recognizer, save_checkpoint

    vocab = CharVocab()
    for name in ("a", "b"):
        save_checkpoint(build_model(vocab), vocab, tmp_path / name, {"version": name})
    attach_fallback(tmp_path / "a", tmp_path / "b", tmp_path / "ab", below=0.98)
    loaded = load_recognizer(tmp_path / "ab")
    assert loaded.version == "a+b" and loaded.fallback is not None and loaded.fallback_below == 0.98
    alone = load_recognizer(tmp_path / "ab", fallback=False)
    assert alone.fallback is None and alone.version == "a"
    with pytest.raises(CheckpointError, match="exists"):
        attach_fallback(tmp_path / "a", tmp_path / "b", tmp_path / "ab")
    with pytest.raises(CheckpointError, match="not an eyeops recogniser"):
        attach_fallback(tmp_path / "a", tmp_path / "missing", tmp_path / "c")


def test_fine_tuning_a_paired_checkpoint_keeps_its_fallback(tmp_path):
    from eyeops.ocr.dataset import CropSet
    from eyeops.ocr.model import attach_fallback, load_recognizer, save_checkpoint
    from eyeops.ocr.train import TrainConfig, train

    vocab = CharVocab()
    for name in ("a", "b"):
        save_checkpoint(build_model(vocab), vocab, tmp_path / name, {"version": name})
    attach_fallback(tmp_path / "a", tmp_path / "b", tmp_path / "ab", below=0.95)
    crops = np.random.default_rng(0).integers(0, 255, size=(8, 32, 128)).astype(np.uint8)
    data = CropSet(crops, ["12"] * 8, [r"\d{2}"] * 8, ["k"] * 8, ["f"] * 8)
    train(data, None, TrainConfig(steps=2, batch_size=4, warmup=1, init=str(tmp_path / "ab")), tmp_path / "t")
    tuned = load_recognizer(tmp_path / "t")
    assert tuned.fallback is not None and tuned.fallback.version == "b" and tuned.fallback_below == 0.95


def test_a_character_the_grammar_forces_is_certain_and_the_end_token_always_counts():
    # laterality's O, a patient id's P, a date's dots: the same whatever the image shows
    torch.manual_seed(0)
    vocab = CharVocab()
    recognizer = Recognizer(build_model(vocab), vocab, None, "test")
    crops = np.random.default_rng(5).integers(0, 255, size=(3, 32, 128)).astype(np.uint8)
    grammars = ["OD|OS", r"P\d{7}", r"\d{2}\.\d{2}\.\d{4}"]
    new = recognize(recognizer, crops, grammars)
    old = recognize(recognizer, crops, grammars, count_forced=True)
    forced_at = [[0], [0], [2, 5]]  # where the grammar allows one character only
    for n, o, places in zip(new, old, forced_at, strict=True):
        assert n.text == o.text  # the reading is the same; only what its confidence counts differs
        for k, (a, b) in enumerate(zip(n.token_confidences, o.token_confidences, strict=True)):
            assert a == (1.0 if k in places else b)
        assert n.token_confidences[-1] == o.token_confidences[-1]  # the forced end token counts
        assert n.confidence >= o.confidence
    # an untrained model doubts the forced characters: the old rule was lower on at least one
    assert any(n.confidence > o.confidence for n, o in zip(new, old, strict=True))
