"""The device admin's pages: onboard a device kind from a sample export with boxes drawn in the
browser, preview its layout, and start its reference fine-tune."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from eyeops.console.users import Session
from eyeops.console.web import DEVICE_ADMIN, MAX_FORM_BYTES, MAX_UPLOAD_BYTES, Refused, Web, same_token
from eyeops.devices.layout import DeviceLayout
from eyeops.review.images import png

log = logging.getLogger("eyeops.console")

FIELD_TYPES: dict[str, dict[str, Any]] = {
    # what a device admin picks for a box; each becomes a FieldSpec
    "number": {"kind": "number"},
    "signed number": {"kind": "number", "show_plus": True},
    "date (dd.mm.yyyy)": {"kind": "date", "pattern": r"\d{2}\.\d{2}\.\d{4}", "date_format": "%d.%m.%Y"},
    "date (dd/mm/yyyy)": {"kind": "date", "pattern": r"\d{2}/\d{2}/\d{4}", "date_format": "%d/%m/%Y"},
    "date (yyyy-mm-dd)": {"kind": "date", "pattern": r"\d{4}-\d{2}-\d{2}", "date_format": "%Y-%m-%d"},
    "patient id": {"kind": "text", "pattern": r"P\d{7}"},
    "laterality": {"kind": "text", "pattern": r"OD|OS"},
}


def add_device_routes(app: FastAPI, web: Web) -> None:
    """/devices: the kinds, onboarding, previews and fine-tunes."""
    config = web.config

    # -- devices ---------------------------------------------------------------------------------
    @app.get("/devices", response_class=HTMLResponse)
    async def devices(request: Request) -> HTMLResponse:
        session = web.require(request, DEVICE_ADMIN)
        return await devices_page(request, session)

    async def devices_page(
        request: Request, session: Session, status: int = 200, **context: Any
    ) -> HTMLResponse:
        jobs = await asyncio.to_thread(config.finetunes.jobs) if config.finetunes else {}
        return web.page(
            "devices.html",
            request,
            session,
            status=status,
            layouts=list(web.registry),
            field_types=list(FIELD_TYPES),
            writable=config.layouts_dir is not None,
            finetunes=config.finetunes is not None,
            jobs=jobs,
            busy=any(j.running for j in jobs.values()),
            **context,
        )

    @app.post("/devices/{kind}/finetune")
    async def start_finetune(request: Request, kind: str) -> Response:
        """Start `eyeops devices finetune KIND` (eyeops.devices.finetune_jobs): an onboarded kind,
        one fine-tune at a time; the page shows its progress and the gate's verdict."""
        session, _ = await web.form_of(request, DEVICE_ADMIN)
        if config.finetunes is None:
            raise Refused(
                409,
                "this console does not run fine-tunes (--finetune-registry);"
                f" run `eyeops devices finetune {kind if kind in web.registry else 'KIND'}` instead",
            )
        if kind not in web.registry:
            raise Refused(404, "no such device kind")
        layout = web.registry[kind]
        if layout.template.reference is None:
            raise Refused(
                409, f"{kind} is a kind eyeops ships: fine-tunes are for devices onboarded from a sample"
            )
        await asyncio.to_thread(config.finetunes.start, kind, session.user)
        log.info("%s started the fine-tune of %s", session.user, kind)
        return RedirectResponse("/devices#finetunes", status_code=303)

    @app.get("/devices/{kind}/preview.png")
    async def device_preview(request: Request, kind: str) -> Response:
        """A device's boxes and field names drawn over its reference image (eyeops devices preview)."""
        web.require(request, DEVICE_ADMIN)
        if kind not in web.registry:
            raise Refused(404, "no such device kind")
        data = await asyncio.to_thread(_preview_png, web.registry[kind])
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/devices")
    async def onboard_device(request: Request) -> Response:
        session = web.require(request, DEVICE_ADMIN)
        too_large = f"the sample is larger than {MAX_UPLOAD_BYTES >> 20} MiB"
        web.check_length(request, MAX_UPLOAD_BYTES + MAX_FORM_BYTES, too_large)
        form = await request.form()
        if not same_token(str(form.get("csrf", "")), session.csrf):
            raise Refused(403, "this form is stale or came from another site; reload the page and try again")
        if config.layouts_dir is None:
            raise Refused(409, "this console has no folder for onboarded devices (--layouts-dir)")
        sample = form.get("sample")
        if sample is None or isinstance(sample, str):
            raise Refused(400, "send the device's sample export (PNG, JPEG, TIFF or DICOM)")
        data = await sample.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise Refused(413, too_large)
        try:
            boxes = json.loads(str(form.get("boxes", "[]")))
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser recurses
            raise Refused(400, "boxes: draw at least one box on the sample") from None
        kind = str(form.get("kind", "")).strip()
        current = web.registry
        if kind in current and not (config.layouts_dir / f"{kind}.yaml").exists():
            raise Refused(409, f"{kind} is a device kind eyeops ships; name the new device otherwise")
        done = await asyncio.to_thread(
            _onboard,
            kind,
            str(form.get("description", "")),
            sample.filename or "sample.png",
            data,
            boxes,
            config.layouts_dir,
        )
        web.reload_layouts()
        log.info("%s onboarded device kind %s", session.user, kind)
        return await devices_page(request, session, onboarded=done)


def _preview_png(layout: DeviceLayout) -> bytes:
    import cv2
    import numpy as np

    from eyeops.devices.onboard import preview

    t = layout.template
    image = cv2.imread(t.reference, cv2.IMREAD_GRAYSCALE) if t.reference else None
    if image is None:  # a shipped kind: its boxes over a blank screen of the template's size
        image = np.full((t.height, t.width), 235, np.uint8)
    return png(preview(image, layout))


def _onboard(
    kind: str, description: str, filename: str, data: bytes, boxes: Any, out_dir: Path
) -> dict[str, Any]:
    """A layout from the boxes drawn in the browser, then the CLI's own onboarding (eyeops.devices)."""
    import cv2
    import numpy as np

    from eyeops.devices.onboard import SAMPLE_SUFFIXES, OnboardingError, onboard

    if not kind or not all(c.isalnum() or c == "_" for c in kind) or not kind[0].isalpha():
        raise OnboardingError("kind: letters, digits and _, starting with a letter (e.g. lensmeter)")
    suffix = Path(filename).suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise OnboardingError(
            f"send a PNG, JPEG, TIFF or DICOM export, not {suffix or 'a file without suffix'}"
        )
    if not isinstance(boxes, list) or not boxes:
        raise OnboardingError(
            "draw a box for every field: patient_id, laterality, exam_date and the measurements"
        )
    with tempfile.TemporaryDirectory() as tmp:
        sample_path = Path(tmp) / f"sample{suffix}"
        sample_path.write_bytes(data)
        grey = None if suffix == ".dcm" else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if suffix != ".dcm" and grey is None:
            raise OnboardingError("the sample could not be decoded as an image")
        from eyeops.devices.onboard import read_sample

        h, w = read_sample(sample_path).shape
        header: list[dict[str, Any]] = []
        fields: list[dict[str, Any]] = []
        for box in boxes:
            spec = _field_spec(box)
            (header if spec["name"] in ("patient_id", "laterality", "exam_date") else fields).append(spec)
        layout = {
            "kind": kind,
            "description": description.strip() or kind,
            "template": {"width": w, "height": h},
            "header": header,
            "fields": fields,
        }
        layout_path = Path(tmp) / f"{kind}.yaml"
        layout_path.write_text(yaml.safe_dump(layout, sort_keys=False))
        done = onboard(kind, sample_path, layout_path, out_dir)
    return {
        "kind": kind,
        "layout": done.layout.name,
        "keypoints": done.keypoints,
        "fields": len(boxes),
        "preview": done.preview.name,
    }


def _field_spec(box: Any) -> dict[str, Any]:
    from eyeops.devices.onboard import OnboardingError

    if not isinstance(box, dict):
        raise OnboardingError("each box needs a name, a type and its position")
    name = str(box.get("name", "")).strip()
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise OnboardingError("each box needs a field name of letters, digits and _")
    kind = FIELD_TYPES.get(str(box.get("type", "")))
    if kind is None:
        raise OnboardingError(f"field {name}: pick a type among {', '.join(FIELD_TYPES)}")
    try:  # NaN is a ValueError, infinity and integers beyond a float an OverflowError
        x, y, w, h = (round(float(box[k])) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise OnboardingError(f"field {name}: its box needs x, y, w and h in the sample's pixels") from None
    label = str(box.get("label") or name).strip()[:64]
    spec: dict[str, Any] = {"name": name, "label": label, "box": [x, y, w, h], **kind}
    if kind["kind"] == "number":
        try:
            spec["decimals"] = int(box.get("decimals") or 0)
            spec["range"] = [float(box["low"]), float(box["high"])]
        except (KeyError, TypeError, ValueError, OverflowError):
            raise OnboardingError(
                f"field {name}: a number needs its range (low and high) and decimals"
            ) from None
        if not (0 <= spec["decimals"] <= 6 and all(math.isfinite(v) for v in spec["range"])):
            raise OnboardingError(f"field {name}: decimals from 0 to 6 and a finite range (low and high)")
        if str(box.get("unit", "")).strip():
            spec["unit"] = str(box["unit"]).strip()
    return spec
