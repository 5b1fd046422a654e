"""`eyeops ocr ...`: train the recogniser, build crop sets, evaluate against the running stack."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from eyeops.resources import trocr_checkpoint
from eyeops.settings import Settings, source_checkout

if TYPE_CHECKING:
    from eyeops.ocr.dataset import CropSet


def checkpoint_out(out: Path | None) -> Path:
    """Where a trained or averaged checkpoint goes: `out`, or in a source checkout the shipped
    checkpoint (then committed); an installed package is never written to."""
    if out is not None:
        return out
    checkout = source_checkout()
    if checkout is None:
        raise SystemExit("--out is required: an installed eyeops never overwrites its shipped checkpoint")
    return checkout / "inference" / "triton" / "trocr" / "1" / "checkpoint"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ocr = sub.add_parser("ocr", help="train and evaluate the field recogniser")
    cmds = ocr.add_subparsers(dest="ocr_command", required=True)
    t = cmds.add_parser("train", help="train the TrOCR-architecture recogniser from scratch")
    t.add_argument("--exams", type=int, default=5000, help="synthetic exams to crop for training")
    t.add_argument("--eval-exams", type=int, default=300)
    t.add_argument("--steps", type=int, default=12000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--max-minutes", type=float, default=60.0)
    t.add_argument("--eval-every", type=int, default=1000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup", type=int, default=300)
    t.add_argument("--init", type=Path, default=None, help="continue from this checkpoint folder")
    t.add_argument("--workers", type=int, default=2, help="processes rendering the crop sets")
    t.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads for the training itself (1 leaves a core free; a resumed run may change it)",
    )
    t.add_argument(
        "--faces", type=int, default=None, help="train on the first N training fonts (rounds 1-2 used 20)"
    )
    t.add_argument(
        "--stop-at", type=int, default=None, help="stop after this step; the LR schedule still spans --steps"
    )
    t.add_argument(
        "--out", type=Path, default=None, help="checkpoint folder (default in a checkout: the shipped one)"
    )
    t.add_argument("--cache", type=Path, default=None, help="folder to cache rendered crop sets in")
    t.add_argument(
        "--state",
        type=Path,
        default=None,
        help="resumable training: keep the training state here and resume from it exactly (weights,"
        " optimizer, schedule, data cursor, random state); run again with the same arguments to go on",
    )
    t.add_argument("--state-every", type=int, default=200, help="steps between saves of --state")
    t.add_argument(
        "--grammar-share",
        type=float,
        default=0.0,
        help="share of training exams whose texts are drawn uniformly from each field's grammar"
        " (every length and character the format allows: no prior over values)",
    )
    t.add_argument(
        "--variety",
        choices=("classic", "broad", "reference"),
        default="classic",
        help="training renderer: classic (rounds 1-6), broad (more fonts, LCD readouts, screens, damage)"
        " or reference (values written into an onboarded kind's own reference image, broad damage)",
    )
    t.add_argument(
        "--mix-classic",
        type=int,
        default=0,
        metavar="EXAMS",
        help="with --variety broad or reference: add the crops of this many classic-renderer exams"
        " of every kind (same seed), so the recogniser keeps what it reads today",
    )
    t.add_argument(
        "--kinds",
        nargs="+",
        default=None,
        metavar="KIND",
        help="render only these device kinds for the training set (with --variety reference: onboarded"
        " kinds, whose layout folders are in EYEOPS_LAYOUT_DIRS)",
    )
    t.set_defaults(func=_train)
    a = cmds.add_parser(
        "average", help="average the weights of checkpoints fine-tuned from one another (a model soup)"
    )
    a.add_argument("checkpoints", type=Path, nargs="+", help="two or more checkpoint folders")
    a.add_argument("--weights", type=float, nargs="+", default=None, help="one each (default: equal)")
    a.add_argument(
        "--out", type=Path, default=None, help="checkpoint folder (default in a checkout: the shipped one)"
    )
    a.set_defaults(func=_average)
    f = cmds.add_parser(
        "fallback",
        help="pair two checkpoints: the second reads again what the first reads below a confidence",
    )
    f.add_argument("primary", type=Path, help="the first recogniser (e.g. the shipped checkpoint)")
    f.add_argument("fallback", type=Path, help="the second one (e.g. a --variety broad fine-tune)")
    f.add_argument("--below", type=float, default=None, help="confidence under which the fallback reads")
    f.add_argument("--out", type=Path, required=True, help="new checkpoint folder holding both")
    f.set_defaults(func=_fallback)
    e = cmds.add_parser("eval", help="render a held-out set, send it through the running OCR endpoint")
    e.add_argument("--count", type=int, default=300)
    e.add_argument("--seed", type=int, default=1000)
    e.add_argument(
        "--values",
        choices=("realistic", "grammar"),
        default="realistic",
        help="with --offline and rendered exams: realistic values, or texts drawn uniformly from each"
        " field's grammar (a device whose values are unusual)",
    )
    e.add_argument("--endpoint", default=None, help="OCR transformer base URL (default: local stack)")
    e.add_argument("--concurrency", type=int, default=4)
    e.add_argument("--no-tesseract", action="store_true")
    e.add_argument("--json", action="store_true", help="print only the JSON summary")
    e.add_argument(
        "--offline",
        action="store_true",
        help="score a checkpoint in this process (the service's align, crop and decoding code), no stack",
    )
    e.add_argument("--checkpoint", type=Path, default=None, help="with --offline (default: the shipped one)")
    e.add_argument(
        "--no-ppocr", action="store_true", help="with --offline: leave out the second recogniser (PP-OCR)"
    )
    e.add_argument(
        "--peer-model",
        default=None,
        metavar="MODEL.onnx[:DICTIONARY.txt]",
        help="with --offline: another PP-OCR recogniser as the second opinion (default: the served one)",
    )
    e.add_argument(
        "--exams",
        type=Path,
        default=None,
        help="score the exams in this folder (images + truth.jsonl, e.g. a stress set from"
        " `python -m tests.stress.render`) instead of rendering --count held-out ones",
    )
    e.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="with --offline: the arbitration's calibration file (default: the shipped one)",
    )
    e.set_defaults(func=_eval)
    c = cmds.add_parser(
        "calibrate",
        help="fit both recognisers' confidence calibrations (the arbitration's) on labelled exams",
    )
    c.add_argument(
        "--exams", type=Path, nargs="*", default=[], help="exam folders (images + truth.jsonl) to fit on"
    )
    c.add_argument("--count", type=int, default=0, help="also this many held-out synthetic exams")
    c.add_argument("--seed", type=int, default=7000, help="their seed (keep it apart from reported sets)")
    c.add_argument(
        "--checkpoint", type=Path, default=None, help="TrOCR checkpoint (default: the shipped one)"
    )
    c.add_argument(
        "--out", type=Path, default=None, help="calibration file (default in a checkout: the shipped one)"
    )
    c.add_argument("--report", type=Path, default=None, help="also write the reliability diagram (HTML)")
    c.add_argument(
        "--records", type=Path, default=None, help="also write every field's two readings (JSON lines)"
    )
    c.set_defaults(func=_calibrate)
    h = cmds.add_parser(
        "harvest",
        help="write the traffic-learning crop sets (pseudo-labels + reviewed fields) for ocr-training",
    )
    h.add_argument("--out", type=Path, required=True, help="folder for traffic.npz, traffic-heldout.npz")
    h.add_argument("--window-days", type=float, default=7.0, help="learn from the last N days of traffic")
    h.add_argument("--cap-per-device", type=int, default=2000, help="pseudo-labels one device may give")
    h.add_argument(
        "--retention-days",
        type=int,
        default=None,
        help="purge kept crops older than this first (default: EYEOPS_TRAFFIC_CROP_RETENTION_DAYS, 30)",
    )
    h.set_defaults(func=_harvest)


def _crop_set(
    cache: Path | None,
    exams: int,
    seed: int,
    split: str,
    workers: int,
    faces: int | None = None,
    variety: str = "classic",
    kinds: list[str] | None = None,
    grammar_share: float = 0.0,
) -> CropSet:
    from eyeops.devices import load_layouts
    from eyeops.ocr.dataset import CropSet, build_crop_set, training_layouts
    from eyeops.synth.exams import Variety
    from eyeops.synth.fonts import font_names

    kind: Variety = "classic"
    if split == "train" and variety in ("broad", "reference"):
        kind = "broad" if variety == "broad" else "reference"
    layouts = training_layouts(load_layouts(), kinds, kind)
    # The face count and the kinds are in the name: a cache rendered before the font list grew, or
    # for other kinds, is not reused.
    n_faces = len(font_names("broad" if kind == "broad" else split)[:faces])
    tag = "" if kind == "classic" else f"-{kind}"
    tag += "-" + "+".join(kinds) if kinds else ""
    tag += f"-grammar{grammar_share:g}" if grammar_share > 0 else ""
    # v3: crops with the value ink placed and sized by eyeops.regions.prepare_crop
    path = cache / f"crops-v3-{split}{tag}-{seed}-{exams}-faces{n_faces}.npz" if cache else None
    if path is not None and path.is_file():
        return CropSet.load(path)
    data = build_crop_set(
        layouts,
        exams,
        seed,
        split,
        workers=workers,
        faces=faces,
        variety=kind,
        grammar_fraction=grammar_share,
    )
    if path is not None:
        data.save(path)
    return data


def _train(args: argparse.Namespace) -> int:
    from eyeops.ocr.train import TrainConfig, train

    cache = args.cache or Settings().data_dir / "cache"
    if not 0.0 <= args.grammar_share <= 1.0:
        raise SystemExit(f"--grammar-share is a share of exams in [0, 1], not {args.grammar_share}")
    train_set = _crop_set(
        cache,
        args.exams,
        args.seed,
        "train",
        args.workers,
        args.faces,
        args.variety,
        args.kinds,
        args.grammar_share,
    )
    if args.mix_classic:
        classic = _crop_set(cache, args.mix_classic, args.seed, "train", args.workers, args.faces)
        train_set = train_set.concat(classic)
    eval_set = (
        _crop_set(cache, args.eval_exams, args.seed + 1, "eval", args.workers) if args.eval_exams else None
    )
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        warmup=args.warmup,
        max_minutes=args.max_minutes,
        eval_every=args.eval_every,
        init=str(args.init) if args.init else None,
        stop_at=args.stop_at,
        state_every=args.state_every,
        threads=args.threads,
    )
    metrics = train(train_set, eval_set, config, checkpoint_out(args.out), state_dir=args.state)
    print(json.dumps(metrics, indent=2))
    return 0


def _average(args: argparse.Namespace) -> int:
    from eyeops.ocr.average import average_checkpoints

    out = checkpoint_out(args.out)
    average_checkpoints(args.checkpoints, out, args.weights)
    print(f"wrote the average of {len(args.checkpoints)} checkpoints to {out}")
    return 0


def _fallback(args: argparse.Namespace) -> int:
    from eyeops.ocr.model import FALLBACK_BELOW, attach_fallback

    below = FALLBACK_BELOW if args.below is None else args.below
    out = attach_fallback(args.primary, args.fallback, args.out, below)
    print(f"wrote {out}: {args.primary} reads first, {args.fallback} reads again below {below:g}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from eyeops.ocr.evaluate import run_eval

    if args.checkpoint is not None and not args.offline:
        raise SystemExit("--checkpoint is for --offline; the stack serves the Triton repository's checkpoint")
    if args.offline:
        from eyeops.devices import load_layouts
        from eyeops.ocr.model import load_recognizer
        from eyeops.ocr.offline import compare_with_tesseract, exam_folder, held_out_exams

        layouts = load_layouts()
        exams = (
            exam_folder(args.exams)
            if args.exams
            else held_out_exams(layouts, args.count, args.seed, args.values)
        )
        recognizer = load_recognizer(args.checkpoint or trocr_checkpoint())
        from eyeops.ocr.peers import CtcRecognizer

        ppocr = None
        if not args.no_ppocr and args.peer_model:
            model, _, dictionary = args.peer_model.partition(":")
            ppocr = CtcRecognizer.load(Path(model), Path(dictionary) if dictionary else None)
        elif not args.no_ppocr:
            ppocr = CtcRecognizer.load()
        from eyeops.ocr.arbitrate import Calibrations

        calibrations = Calibrations.load(args.calibration) if args.calibration else None
        result = compare_with_tesseract(
            recognizer,
            layouts,
            exams,
            tesseract=not args.no_tesseract,
            ppocr=ppocr,
            calibrations=calibrations,
        )
        source = (
            {"exams_from": str(args.exams)}
            if args.exams
            else {"count": args.count, "seed": args.seed, "values": args.values}
        )
        summary = {**source, "version": recognizer.version, **result}
        print(json.dumps(summary, indent=2))
        return 0
    if args.calibration is not None:
        raise SystemExit("--calibration is for --offline; the stack's transformer loads its own")
    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint
        if endpoint is None:  # a fresh local stack, stopped afterwards
            import tempfile

            from eyeops.stack.local import LocalStack

            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eyeops-eval-")))
            if not args.json:
                print(f"starting a local stack (logs in {workdir / 'log'})", flush=True)
            endpoint = stack.enter_context(LocalStack(Settings(data_dir=workdir))).ocr
        summary = run_eval(
            count=args.count,
            seed=args.seed,
            endpoint=endpoint,
            concurrency=args.concurrency,
            tesseract=not args.no_tesseract,
            exams_from=args.exams,
        )
    print(json.dumps(summary, indent=2))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import datetime as dt
    import hashlib
    from itertools import chain

    from eyeops.devices import load_layouts
    from eyeops.ocr.arbitrate import Calibrations
    from eyeops.ocr.calibrate import calibration_summary, fit_calibrations, reliability_html
    from eyeops.ocr.model import load_recognizer
    from eyeops.ocr.offline import LabelledExam, compare_with_tesseract, exam_folder, held_out_exams
    from eyeops.ocr.peers import CtcRecognizer, shipped_peer

    if not args.exams and args.count <= 0:
        raise SystemExit("nothing to fit on: name exam folders with --exams, or a --count of synthetic exams")
    out = args.out
    if out is None:
        checkout = source_checkout()
        if checkout is None:
            raise SystemExit(
                "--out is required: an installed eyeops never overwrites its shipped calibration"
            )
        out = checkout / "eyeops" / "ocr" / "calibration.json"
    layouts = load_layouts()
    # the folders first: a wrong path is said before the recognisers load
    sets: list[list[LabelledExam]] = [list(exam_folder(folder)) for folder in args.exams]
    checkpoint = args.checkpoint or trocr_checkpoint()
    recognizer = load_recognizer(checkpoint)
    peer_file, _ = shipped_peer()
    if args.count > 0:
        sets.append(list(held_out_exams(layouts, args.count, args.seed)))
    rows: list[dict[str, object]] = []
    compare_with_tesseract(
        recognizer,
        layouts,
        chain.from_iterable(sets),
        tesseract=False,
        ppocr=CtcRecognizer.load(),
        calibrations=Calibrations.identity(),
        records=rows,
    )
    lineage = {
        "fitted": dt.date.today().isoformat(),
        "trocr_version": recognizer.version,
        "ppocr_sha256": hashlib.sha256(peer_file.read_bytes()).hexdigest(),
        "exam_folders": [folder.name for folder in args.exams],
        "synthetic": {"count": args.count, "seed": args.seed} if args.count > 0 else None,
        "fields": sum(r["truth"] is not None for r in rows),
        "command": "eyeops ocr calibrate "
        + " ".join(
            [
                *([f"--exams {' '.join(f.name for f in args.exams)}"] if args.exams else []),
                *([f"--count {args.count} --seed {args.seed}"] if args.count else []),
            ]
        ),
    }
    calibrations = fit_calibrations(rows, lineage=lineage)
    out.parent.mkdir(parents=True, exist_ok=True)
    calibrations.save(out)
    if args.records is not None:
        args.records.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if args.report is not None:
        args.report.write_text(
            "<html><body>"
            + reliability_html(rows, calibrations, "Recogniser calibration")
            + "</body></html>",
            encoding="utf-8",
        )
    print(json.dumps({"out": str(out), **calibration_summary(rows, calibrations)}, indent=2))
    return 0


def _harvest(args: argparse.Namespace) -> int:
    from eyeops.db.store import ResultsStore, migrate
    from eyeops.ocr.arbitrate import shipped_calibrations
    from eyeops.ocr.harvest import export_traffic
    from eyeops.ocr.traffic import LearningPolicy

    if args.window_days <= 0 or args.cap_per_device < 0:
        raise SystemExit("--window-days must be positive and --cap-per-device at least 0")
    settings = Settings()
    url = settings.resolved_database_url()
    migrate(url)
    store = ResultsStore.from_url(url)
    manifest = export_traffic(
        store,
        args.out,
        shipped_calibrations(),
        window_days=args.window_days,
        retention_days=args.retention_days or settings.traffic_crop_retention_days,
        policy=LearningPolicy(cap_per_device=args.cap_per_device),
    )
    print(json.dumps(manifest, indent=2))
    return 0
