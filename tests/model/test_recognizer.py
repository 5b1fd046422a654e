"""Model behaviour: training runs and learns, the shipped checkpoint meets its floor on fresh
held-out crops, and any TrOCR checkpoint with its own processor loads."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    TrOCRConfig,
    TrOCRProcessor,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    ViTConfig,
    ViTImageProcessor,
)

from eyeops.ocr.dataset import build_crop_set
from eyeops.ocr.decode import recognize
from eyeops.ocr.model import load_recognizer
from eyeops.ocr.train import TrainConfig, exact_match, train
from eyeops.resources import trocr_checkpoint

# The shipped checkpoint's floor on fresh held-out crops (unseen fonts and noise seeds), grammar-
# constrained as served. docs/measured/index.md gives the full figure measured by `eyeops ocr eval`.
ACCURACY_FLOOR = 0.98


def test_training_smoke_learns_and_saves_a_loadable_checkpoint(layouts, tmp_path: Path):
    data = build_crop_set(layouts, exams=18, seed=3, split="train", workers=1)
    # The schedule spans 60 steps; stop_at ends the run after 40 of them.
    config = TrainConfig(steps=60, stop_at=40, batch_size=16, warmup=5, eval_every=1000, threads=2)
    metrics = train(data, None, config, tmp_path / "ckpt", log=False)
    assert metrics["steps"] == 40
    assert metrics["final_loss"] < metrics["first_loss"] * 0.8
    recognizer = load_recognizer(tmp_path / "ckpt")
    results = recognize(recognizer, data.crops[:8], data.grammars[:8])
    assert all(
        re.fullmatch(g, r.text) or len(r.token_confidences) == 24
        for r, g in zip(results, data.grammars[:8], strict=True)
    )


def test_training_resumes_exactly_from_its_state_and_refuses_a_state_not_its_own(layouts, tmp_path: Path):
    """Stopped at step 7 and resumed (as a session that ends and a later one that goes on), the run
    draws the same batches and ends with the same weights, bit for bit, as one that never stopped."""
    from eyeops.ocr.train import STATE_FILE, TrainingStateInvalid

    data = build_crop_set(layouts, exams=6, seed=5, split="train", workers=1)
    config = TrainConfig(steps=12, batch_size=8, warmup=3, eval_every=1000, threads=2, state_every=5)
    whole = train(data, None, config, tmp_path / "whole", log=False, state_dir=tmp_path / "whole-state")
    first = train(
        data, None, replace(config, stop_at=7), tmp_path / "part", log=False, state_dir=tmp_path / "s"
    )
    assert first["steps"] == 7 and (tmp_path / "s" / STATE_FILE).is_file()
    rest = train(data, None, config, tmp_path / "part", log=False, state_dir=tmp_path / "s")
    assert rest["steps"] == 12 and rest["final_loss"] == whole["final_loss"]
    assert rest["first_loss"] == whole["first_loss"]
    a = load_recognizer(tmp_path / "whole").model.state_dict()
    b = load_recognizer(tmp_path / "part").model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TrainingStateInvalid, match="other settings \\(lr\\)"):
        train(data, None, replace(config, lr=5e-4), tmp_path / "x", log=False, state_dir=tmp_path / "s")
    other = build_crop_set(layouts, exams=6, seed=6, split="train", workers=1)
    with pytest.raises(TrainingStateInvalid, match="another crop set"):
        train(other, None, config, tmp_path / "x", log=False, state_dir=tmp_path / "s")
    (tmp_path / "s" / STATE_FILE).write_bytes((tmp_path / "s" / STATE_FILE).read_bytes()[:5000])
    with pytest.raises(TrainingStateInvalid, match="not a readable training state"):
        train(data, None, config, tmp_path / "x", log=False, state_dir=tmp_path / "s")


def test_shipped_checkpoint_reaches_its_floor_on_fresh_held_out_crops(layouts):
    recognizer = load_recognizer(trocr_checkpoint())
    data = build_crop_set(layouts, exams=60, seed=424242, split="eval", random_fraction=0.0, workers=1)
    assert len(data) > 400
    assert exact_match(recognizer, data) >= ACCURACY_FLOOR


def _char_tokenizer(chars: str) -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def test_any_trocr_checkpoint_with_its_own_processor_loads(tmp_path: Path):
    """The shape of microsoft/trocr-small-printed (RGB input, processor, subword tokenizer) built
    locally, as no hub is reachable here: loading takes the processor path, decoding runs."""
    tokenizer = _char_tokenizer("0123456789.-")
    encoder = ViTConfig(
        image_size=64,
        patch_size=16,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    decoder = TrOCRConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(
        config=VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    )
    model.config.decoder_start_token_id, model.config.eos_token_id, model.config.pad_token_id = 1, 2, 0
    model.save_pretrained(tmp_path)
    processor = TrOCRProcessor(
        image_processor=ViTImageProcessor(size={"height": 64, "width": 64}), tokenizer=tokenizer
    )
    processor.save_pretrained(tmp_path)

    recognizer = load_recognizer(tmp_path)
    assert recognizer.vocab is None and recognizer.processor is not None
    crops = np.random.default_rng(0).integers(0, 255, (3, 32, 128)).astype(np.uint8)
    results = recognize(recognizer, crops, [r"\d{2}\.\d{2}"] * 3, max_tokens=6)
    assert len(results) == 3 and all(isinstance(r.text, str) for r in results)
    assert all(0 < len(r.token_confidences) <= 6 for r in results)


def test_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path: Path):
    from eyeops.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        load_recognizer(tmp_path)


def test_offline_eval_scores_a_checkpoint_on_held_out_exams_without_a_stack(capsys, tmp_path: Path):
    import json

    from eyeops.cli import main

    args = ["ocr", "eval", "--offline", "--count", "12", "--seed", "77", "--no-tesseract", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["exams"] == 12 and len(summary["per_device"]) == 6
    assert summary["field_accuracy"] >= ACCURACY_FLOOR
    # a checkpoint that is not one is refused before anything is rendered
    assert main([*args, "--checkpoint", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--checkpoint is for --offline"):
        main(["ocr", "eval", "--checkpoint", str(tmp_path)])


def test_offline_eval_scores_an_exam_folder_drawn_by_another_renderer(capsys, tmp_path: Path):
    """The stress renderer (tests/stress, written apart from eyeops.synth) draws the same layouts
    with font families training never used; the offline eval scores its folder as it scores ours."""
    import json

    from eyeops.cli import main
    from tests.stress.render import render_stress_set

    render_stress_set(6, seed=5, out=tmp_path / "stress", border=True, damage="none")
    args = ["ocr", "eval", "--offline", "--exams", str(tmp_path / "stress"), "--no-tesseract", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["exams"] == 6 and summary["exams_from"] == str(tmp_path / "stress")
    truth = [json.loads(line) for line in (tmp_path / "stress" / "truth.jsonl").read_text().splitlines()]
    assert summary["fields"] == sum(len(row["fields"]) for row in truth)
    # 0.96 on 120 such exams with light damage (0.76 before value ink was normalised, round 9)
    assert summary["unaligned"] == 0 and summary["field_accuracy"] >= 0.85
    # the PP-OCRv4 peer read the same regions (0.93 on those 60 exams): a broken decode would not
    assert summary["ppocr_field_accuracy"] >= 0.8
    assert main(["ocr", "eval", "--offline", "--exams", str(tmp_path / "none")]) == 2
    assert "truth.jsonl does not exist" in capsys.readouterr().err


def test_the_recogniser_reads_a_renderer_written_apart_from_training(capsys, tmp_path: Path):
    """tests/foreign draws the six layouts its own way (own page designs, centred or left values,
    14 font packages the project uses nowhere, its own 7-segment and dot-matrix readouts): the
    shipped recogniser reads most fields, about as PP-OCRv4 does on the same regions."""
    import json

    from eyeops.cli import main
    from tests.foreign.render import main as render

    assert (
        render(["--count", "12", "--seed", "9", "--out", str(tmp_path / "foreign"), "--damage", "light"]) == 0
    )
    capsys.readouterr()
    args = ["ocr", "eval", "--offline", "--exams", str(tmp_path / "foreign"), "--no-tesseract", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["exams"] == 12 and summary["unaligned"] <= 1
    # 0.94 on 120 such exams (PP-OCRv4 0.93); 0.37 before the layout fit and the value-ink
    # normalisation of this round
    assert summary["field_accuracy"] >= 0.8
    assert summary["silent_error_rate"] <= 0.02
