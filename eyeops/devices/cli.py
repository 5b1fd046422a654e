"""`eyeops devices`: list the device kinds, onboard one from a sample export, preview a layout,
fine-tune the recogniser for an onboarded kind and register it through the gate."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("devices", help="device kinds: list, onboard from a sample export, preview")
    dsub = p.add_subparsers(dest="devices_command", required=True)
    ls = dsub.add_parser("list", help="the device kinds this machine knows, and where each comes from")
    ls.set_defaults(func=_list)
    on = dsub.add_parser(
        "onboard",
        help="define a device kind from one sample export and a layout whose boxes are in its pixels",
    )
    on.add_argument("--kind", required=True, help="the device kind's name, e.g. lensmeter")
    on.add_argument(
        "--sample", type=Path, required=True, help="a PNG, JPEG, TIFF or DICOM export of the device"
    )
    on.add_argument(
        "--layout", type=Path, required=True, help="the layout YAML, boxes in the sample's pixels"
    )
    on.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of onboarded devices (default: first of EYEOPS_LAYOUT_DIRS, else <data dir>/layouts)",
    )
    on.set_defaults(func=_onboard)
    ft = dsub.add_parser(
        "finetune",
        help="fine-tune the recogniser for an onboarded kind in a CPU budget, register it through the gate",
    )
    ft.add_argument("kind", help="an onboarded device kind (it has a reference image)")
    ft.add_argument("--budget-minutes", type=float, default=30.0, help="everything included (default 30)")
    ft.add_argument("--exams", type=int, default=1000, help="training exams drawn on its reference image")
    ft.add_argument(
        "--replay-exams", type=int, default=1500, help="classic and broad exams of every kind, replayed"
    )
    ft.add_argument("--steps", type=int, default=1500, help="at most; the budget may stop it sooner")
    ft.add_argument("--eval-exams", type=int, default=60, help="held-out exams of the kind")
    ft.add_argument(
        "--replay-eval-exams", type=int, default=240, help="held-out classic exams of the other kinds"
    )
    ft.add_argument(
        "--mix",
        type=float,
        default=0.5,
        help="share of the fine-tuned weights in the candidate, the rest the champion's (WiSE-FT; 1: none)",
    )
    ft.add_argument("--seed", type=int, default=23)
    ft.add_argument(
        "--registry", type=Path, default=None, help="model registry root (default: <data dir>/registry)"
    )
    ft.add_argument(
        "--out", type=Path, default=None, help="checkpoint folder (default: <data dir>/finetune/<kind>)"
    )
    ft.add_argument(
        "--state", type=Path, default=None, help="resume an interrupted fine-tune from this folder"
    )
    ft.add_argument("--no-register", action="store_true", help="fine-tune and evaluate; register nothing")
    ft.set_defaults(func=_finetune)
    pv = dsub.add_parser("preview", help="draw a kind's boxes and field names over its reference image")
    pv.add_argument("kind")
    pv.add_argument("--out", type=Path, default=None, help="PNG to write (default: ./<kind>.preview.png)")
    pv.set_defaults(func=_preview)


def _list(args: argparse.Namespace) -> int:
    from eyeops.devices.layout import load_layouts

    for layout in load_layouts():
        where = (
            f"reference {Path(layout.template.reference).name}" if layout.template.reference else "shipped"
        )
        fields = len(list(layout.all_fields()))
        print(f"{layout.kind:28s} {fields:2d} fields  {where}")
    return 0


def _onboard(args: argparse.Namespace) -> int:
    from eyeops.devices.layout import LAYOUT_DIRS_ENV, extra_layout_dirs
    from eyeops.devices.onboard import onboard
    from eyeops.settings import Settings

    dirs = extra_layout_dirs()
    out = args.out or (dirs[0] if dirs else Settings().data_dir / "layouts")
    done = onboard(args.kind, args.sample, args.layout, out)
    print(
        f"onboarded {args.kind}: {done.layout}, reference {done.reference.name}, {done.keypoints} keypoints"
    )
    print(f"check the boxes: {done.preview}")
    if out.resolve() not in [d.resolve() for d in dirs]:
        joined = os.pathsep.join([str(out.resolve()), *map(str, dirs)])
        print(f"the OCR service reads it with {LAYOUT_DIRS_ENV}={joined}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import json
    import sys
    import tempfile
    import time

    from eyeops.devices.layout import load_layouts
    from eyeops.ocr.finetune import DeviceFinetune, finetune_for_device
    from eyeops.ocr.offline import MODEL_NAME, export_model_repository
    from eyeops.registry import ModelRegistry
    from eyeops.resources import trocr_checkpoint
    from eyeops.settings import Settings

    data_dir = Settings().data_dir
    registry = ModelRegistry(args.registry or data_dir / "registry")
    champion = registry.champion("ocr")
    start = champion.path / MODEL_NAME / "1" / "checkpoint" if champion else trocr_checkpoint()
    plan = DeviceFinetune(
        kind=args.kind,
        budget_minutes=args.budget_minutes,
        exams=args.exams,
        replay_exams=args.replay_exams,
        steps=args.steps,
        eval_exams=args.eval_exams,
        replay_eval_exams=args.replay_eval_exams,
        mix=args.mix,
        seed=args.seed,
    )
    out = args.out or data_dir / "finetune" / args.kind

    def progress(line: str) -> None:  # stdout carries the JSON summary alone
        print(line, file=sys.stderr, flush=True)

    done = finetune_for_device(plan, load_layouts(), start, out, state_dir=args.state, log=progress)
    summary = done.summary()
    if not args.no_register:
        from eyeops.pipelines.gates import register_through_gate

        version = f"{args.kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        with tempfile.TemporaryDirectory(prefix="eyeops-finetune-") as tmp:
            repository = export_model_repository(out, Path(tmp) / "repository")
            registered = register_through_gate(
                registry, "ocr", version, repository, done.evaluation, made_by="eyeops devices finetune"
            )
        summary["registered"] = {
            "version": version,
            "promoted": registered.verdict.promote,
            "gate": registered.verdict.reasons,
            "champion_before": registered.champion_before,
            "storage_uri": registered.version.storage_uri,
        }
    print(json.dumps(summary, indent=2))
    return 0


def _preview(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from eyeops.devices.layout import load_layouts
    from eyeops.devices.onboard import preview
    from eyeops.errors import LayoutError

    layout = load_layouts()[args.kind]
    t = layout.template
    if t.reference is not None:
        image = cv2.imread(t.reference, cv2.IMREAD_GRAYSCALE)
    else:  # a shipped kind: its boxes over a blank screen of the template's size
        image = np.full((t.height, t.width), 235, np.uint8)
    if image is None:
        raise LayoutError(f"the reference image of {args.kind} cannot be read: {t.reference}")
    out = args.out or Path(f"{args.kind}.preview.png")
    if not cv2.imwrite(str(out), preview(image, layout)):
        raise LayoutError(f"cannot write {out}: use a .png path in a folder that exists")
    print(out)
    return 0
