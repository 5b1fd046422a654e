"""A new device's first week through the traffic loop, day by day.

    python -m bench.first_week [--start CHECKPOINT] [--days 7] [--per-day 60] [--steps 300]

The seventh device of the docs (a lensmeter no renderer of ours draws, `tests/foreign/lensmeter.yaml`,
one fixed screen design drawn by the independent renderer `tests/foreign/render.py`) is onboarded
from its first export. Each day, `--per-day` new exams of it (light damage: phone photos and screen
grabs) are read as served: TrOCR, the PP-OCR second reader and the arbitration. Then, as in the
clinic:

- fields that went to review are labelled by the person who reviews them (here: the truth);
- the day's fields pass `eyeops.ocr.traffic.harvest` (pseudo-labels: accepted exams, both readers
  alike, calibrated; capped; the device checked against its own earlier days);
- a fifth of the reviewed exams, by a hash of their id, is held out for the gate;
- the model is fine-tuned on every label so far with classic and broad exams of the six shipped
  kinds replayed, and averaged half and half with the serving model (WiSE-FT); the OCR gate
  (eyeops.ocr.gate) compares the average with the serving model: per kind on held-out classic exams
  of the shipped kinds, and on the held-out reviewed crops of the new one. Only a model the gate
  passes serves the next day.

Per day it prints what the clinic met that day (field and exam accuracy, exams accepted with no
person, silent errors), the labels, the gate's verdict, and the serving model on a fixed test set
of the device (60 exams apart from the traffic, the docs' "light" set), and writes it all as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEVICE_YAML = ROOT / "tests" / "foreign" / "lensmeter.yaml"
KIND = "lensmeter"
DEVICE_ID = "lensmeter-room-3"
SEED = 777  # the design the docs' seventh device draws; its test set is exams 1..60


def _rates(result: dict[str, Any]) -> dict[str, float]:
    keys = ("field_accuracy", "exam_accuracy", "accepted_exam_rate", "silent_error_rate")
    out = {k: round(float(result[k]), 4) for k in keys}
    out["arbitrated_field_accuracy"] = round(float(result["arbitrated_field_accuracy"]), 4)
    return out


def _traffic_fields(
    records: list[dict[str, Any]], day: int, grammars: dict[str, str], models: str
) -> list[Any]:
    """The loop's view of one day's served fields: reviewed ones carry the person's label."""
    from eyeops.ocr.traffic import TrafficField

    by_exam: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_exam.setdefault(int(r["exam"]), []).append(r)
    out = []
    for exam, rows in by_exam.items():
        accepted = all(r["served_status"] == "accepted" for r in rows)
        for r in rows:
            review = r["served_status"] != "accepted"
            out.append(
                TrafficField(
                    exam_id=f"day{day}-exam{exam}",
                    device_id=DEVICE_ID,
                    device_kind=str(r["device_kind"]),
                    field=str(r["field"]),
                    grammar=grammars[str(r["field"])],
                    crop=r["crop"],
                    text=str(r["text"]),
                    confidence=float(r["confidence"]),
                    second_text=r["second_text"],
                    second_confidence=r["second_confidence"],
                    exam_status="accepted" if accepted else "review",
                    models=models,
                    reviewed_text=str(r["truth"]) if review and r["truth"] is not None else None,
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--start", type=Path, default=None, help="checkpoint serving on day 1 (default: shipped)"
    )
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--per-day", type=int, default=60)
    parser.add_argument("--steps", type=int, default=300, help="fine-tune steps each evening")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--replay-exams", type=int, default=400)
    parser.add_argument(
        "--guard-exams", type=int, default=120, help="held-out classic exams of the shipped kinds"
    )
    parser.add_argument("--test-exams", type=int, default=60)
    parser.add_argument("--damage", default="light", choices=("none", "light", "full"))
    parser.add_argument("--out", type=Path, default=None, help="also write the days as JSON here")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)

    from eyeops.devices.layout import load_layouts
    from eyeops.devices.onboard import onboard
    from eyeops.ocr.arbitrate import shipped_calibrations
    from eyeops.ocr.average import average_checkpoints
    from eyeops.ocr.dataset import build_crop_set
    from eyeops.ocr.gate import gate
    from eyeops.ocr.model import load_recognizer
    from eyeops.ocr.offline import compare_with_tesseract, exam_folder, held_out_exams
    from eyeops.ocr.peers import CtcRecognizer
    from eyeops.ocr.traffic import DeviceHistory, crop_accuracy_per_kind, harvest, split_heldout
    from eyeops.ocr.train import TrainConfig, train
    from eyeops.resources import trocr_checkpoint
    from tests.foreign.render import render_set

    work = args.work or Path(tempfile.mkdtemp(prefix="eyeops-first-week-"))
    layouts_dir = work / "device"
    layouts_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEVICE_YAML, layouts_dir / f"{KIND}.yaml")
    started = time.monotonic()

    def draw(folder: str, count: int, start: int, damage: str, **kw: Any) -> Path:
        out = work / folder
        if not (out / "truth.jsonl").is_file():
            render_set(
                out,
                count,
                SEED,
                damage,
                True,
                layout_dirs=[layouts_dir],
                kinds=[KIND],
                fixed_design=True,
                start=start,
                **kw,
            )
        return out

    sample = draw("sample", 1, 0, "none", page_scale=1.0)
    onboarded = onboard(KIND, next(sample.glob("*.png")), layouts_dir / f"{KIND}.yaml", work / "onboarded")
    registry = load_layouts(extra=[onboarded.layout.parent])
    shipped = load_layouts()
    grammars = {s.name: s.grammar for s in registry[KIND].all_fields()}
    test_set = exam_folder(draw("test", args.test_exams, 1, args.damage))
    guard = list(held_out_exams(shipped, args.guard_exams, 1000))
    # Replay what the shipped recogniser learnt from: classic and broad exams of the six kinds.
    half = args.replay_exams // 2
    replay = build_crop_set(shipped, half, 31, "train", workers=2)
    replay = replay.concat(build_crop_set(shipped, half, 32, "train", workers=2, variety="broad"))
    peer, calibrations = CtcRecognizer.load(), shipped_calibrations()

    def read(
        checkpoint: Path, exams: list[Any], records: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        return compare_with_tesseract(
            load_recognizer(checkpoint),
            registry,
            exams,
            tesseract=False,
            ppocr=peer,
            calibrations=calibrations,
            records=records,
            crops_in_records=records is not None,
        )

    serving = args.start or trocr_checkpoint()
    fields: list[Any] = []
    history: dict[str, DeviceHistory] = {}
    days: list[dict[str, Any]] = []
    before = read(serving, test_set)
    print(
        json.dumps({"day": 0, "test_set": _rates(before), "serving": str(args.start or "shipped")}),
        flush=True,
    )
    for day in range(1, args.days + 1):
        exams = exam_folder(draw(f"day{day}", args.per_day, 1000 + day * args.per_day, args.damage))
        records: list[dict[str, Any]] = []
        met = read(serving, exams, records)
        todays = _traffic_fields(records, day, grammars, f"trocr {serving.name} + ppocr")
        fields += todays
        accepted = round(met["accepted_exam_rate"] * met["exams"])
        window = {DEVICE_ID: DeviceHistory(int(met["exams"]), accepted, frozenset({KIND}))}
        crop = harvest(fields, window, history, calibrations)
        seen = history.get(DEVICE_ID)
        history[DEVICE_ID] = DeviceHistory(
            (seen.exams if seen else 0) + window[DEVICE_ID].exams,
            (seen.accepted if seen else 0) + accepted,
            frozenset({KIND}),
        )
        train_part, held = split_heldout(crop)
        candidate = work / f"model-day{day}"
        config = TrainConfig(
            steps=args.steps,
            batch_size=64,
            lr=args.lr,
            warmup=30,
            seed=day,
            max_minutes=30.0,
            eval_every=args.steps + 1,
            init=str(serving),
        )
        tuned = work / f"model-day{day}.tuned"
        trained = train(train_part.concat(replay), None, config, tuned, log=False)
        # WiSE-FT, as `eyeops devices finetune`: half the serving weights, half the fine-tuned.
        average_checkpoints([serving, tuned], candidate, [0.5, 0.5])
        new, old = load_recognizer(candidate), load_recognizer(serving)
        ours = read(candidate, guard)
        ours["heldout_crops"] = crop_accuracy_per_kind(new, held) if len(held) else {}
        theirs = read(serving, guard)
        theirs["heldout_crops"] = crop_accuracy_per_kind(old, held) if len(held) else {}
        ours["champion_same_set"] = theirs
        verdict = gate(ours, None)
        if verdict.promote:
            serving = candidate
        test = read(serving, test_set)
        row = {
            "day": day,
            "met": _rates(met),
            "labels": crop.manifest() | {"held_out_reviewed": len(held), "trained_on": len(train_part)},
            "promoted": verdict.promote,
            "gate": verdict.reasons,
            "train_minutes": round(trained["minutes"], 2),
            "test_set": _rates(test),
            "minutes_so_far": round((time.monotonic() - started) / 60, 1),
        }
        days.append(row)
        print(json.dumps(row), flush=True)
    if args.out is not None:
        summary = {"start": str(args.start or "shipped"), "day0_test_set": _rates(before), "days": days}
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
