"""`eyeops devices`: list the device kinds, onboard one from a sample export, preview a layout."""

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
