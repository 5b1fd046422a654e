"""The review queue and an exam's page: release, second look, reject, and reading again from
corners a reviewer marked."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections import OrderedDict

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from eyeops.console.users import Session
from eyeops.console.web import PENDING_COOKIE, REVIEWER, Refused, Web, age_text
from eyeops.db.review import ReviewStore
from eyeops.db.review_types import Conflict, ExamForReview, NotReviewable, labels_for
from eyeops.devices.layout import DeviceLayout, FieldSpec
from eyeops.fields import FieldReading
from eyeops.review.images import ExamView, png, view_exam
from eyeops.review.reread import Recognizer, reread
from eyeops.review.validate import review_values
from eyeops.settings import Settings

log = logging.getLogger("eyeops.console")

VIEW_CACHE = 16  # exams whose aligned image and crops stay in memory
MAX_QUEUE_AGE_H = 24 * 366 * 10  # the queue filter's "older than": ten years of hours


def add_review_routes(
    app: FastAPI, web: Web, store: ReviewStore, settings: Settings, recognizer: Recognizer | None
) -> None:
    """The reviewer's routes: /queue and /exams/..."""
    config = web.config
    views: OrderedDict[tuple[str, int], ExamView] = OrderedDict()
    views_lock = threading.Lock()
    export_running = threading.Lock()

    # -- the queue -------------------------------------------------------------------------------
    @app.get("/queue", response_class=HTMLResponse)
    async def queue(
        request: Request, kind: str = "", reason: str = "", older_than_h: str = ""
    ) -> HTMLResponse:
        session = web.require(request, REVIEWER)
        try:
            hours = float(older_than_h) if older_than_h.strip() else None
        except ValueError:
            raise Refused(400, "older than: send a number of hours, e.g. 4") from None
        if hours is not None and not 0 <= hours <= MAX_QUEUE_AGE_H:  # also NaN and infinity
            raise Refused(400, f"older than: send a number of hours from 0 to {MAX_QUEUE_AGE_H}, e.g. 4")
        if kind and kind not in web.registry:
            raise Refused(400, "device kind: pick one from the list, or none for every kind")
        if len(reason) > 200 or not reason.isprintable():  # NUL and friends never reach the database
            raise Refused(400, "reason: pick one from the list, or none for every reason")
        older = dt.timedelta(hours=hours) if hours is not None else None
        entries = await asyncio.to_thread(store.queue, kind or None, reason or None, older)
        all_entries = await asyncio.to_thread(store.queue)
        reasons = sorted({r for e in all_entries for r in e.reasons})
        return web.page(
            "queue.html",
            request,
            session,
            entries=entries,
            kinds=web.registry.kinds(),
            reasons=reasons,
            kind=kind,
            reason=reason,
            older_than_h=older_than_h,
            total=len(all_entries),
        )

    # -- an exam ---------------------------------------------------------------------------------
    async def load_exam(exam_id: str) -> ExamForReview:
        if len(exam_id) != 64 or any(c not in "0123456789abcdef" for c in exam_id):
            raise Refused(404, "no such exam: exam ids are 64 hexadecimal digits; go back to the queue")
        exam = await asyncio.to_thread(store.exam, exam_id)
        if exam is None:
            raise Refused(404, "no such exam; go back to the queue")
        return exam

    async def view_of(exam: ExamForReview) -> tuple[DeviceLayout, ExamView | None]:
        layout = web.registry[exam.record.device_kind]
        if exam.image is None:
            return layout, None
        key = (exam.record.exam_id, exam.version)
        with views_lock:
            if key in views:
                views.move_to_end(key)
                return layout, views[key]
        view = await asyncio.to_thread(view_exam, exam.image, layout, settings, exam.corners)
        with views_lock:
            views[key] = view
            while len(views) > VIEW_CACHE:
                views.popitem(last=False)
        return layout, view

    def exam_page(
        request: Request,
        session: Session,
        exam: ExamForReview,
        layout: DeviceLayout,
        view: ExamView | None,
        status: int = 200,
        typed: dict[str, str] | None = None,
        problems: dict[str, str] | None = None,
        message: str | None = None,
        note: str | None = None,
    ) -> HTMLResponse:
        readings = {r.name: r for r in exam.record.fields}
        # A sampled release is checked blind: the second reviewer starts from what the OCR read and
        # sees neither the first reviewer's values nor the audit.
        blind = exam.second_look and session.user != exam.released_by
        rows = []
        for spec in layout.all_fields():
            reading = readings.get(spec.name)
            shown = _screen_text(spec, reading)
            start = reading.raw_text.strip() if blind and reading is not None else shown
            rows.append(
                {
                    "name": spec.name,
                    "unit": spec.unit or "",
                    "reading": reading,
                    "value": (typed or {}).get(spec.name, start),
                    "problem": (problems or {}).get(spec.name),
                    "current": shown,
                    "typed": (typed or {}).get(spec.name),
                    "has_crop": view is not None and spec.name in view.crops,
                }
            )
        now = dt.datetime.now(dt.UTC)
        return web.page(
            "exam.html",
            request,
            session,
            status=status,
            exam=exam,
            rows=rows,
            view=view,
            waiting_since=age_text(exam.received_at, now),
            blind=blind,
            can_edit=exam.waiting and not (exam.second_look and not blind),
            message=message,
            note=note,
            reasons=[(f or "exam", r) for f, r in exam.open_items],
        )

    def take_pending(request: Request, exam_id: str, user: str) -> dict[str, str] | None:
        pending = config.sessions.unseal(request.cookies.get(PENDING_COOKIE))
        if not pending or not str(pending.get("path", "")).startswith(f"/exams/{exam_id}/"):
            return None
        if pending.get("user") != user:  # typed by someone else on this browser: not theirs to see
            return None
        values = pending.get("values")
        if not isinstance(values, dict):
            return None
        return {k.removeprefix("value__"): str(v) for k, v in values.items() if k.startswith("value__")}

    @app.get("/exams/{exam_id}", response_class=HTMLResponse)
    async def exam_get(request: Request, exam_id: str, done: str = "") -> HTMLResponse:
        session = web.require(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        typed = take_pending(request, exam_id, session.user)
        note = {
            "released": "released: the values go to the feature store and the crop set",
            "rejected": "rejected: the exam left the queue",
            "reread": "read again from the corners you marked; check every field and release",
            "agree": "second look saved: both reviewers agree",
            "disagree": "second look saved: the fields you read otherwise went back to review",
        }.get(done)
        if typed:
            note = "your session had expired: the values you typed are back; check them and save again"
        response = exam_page(request, session, exam, layout, view, typed=typed, note=note)
        if typed is not None:
            response.delete_cookie(PENDING_COOKIE, path="/")
        return response

    @app.get("/exams/{exam_id}/original.png")
    async def original_png(request: Request, exam_id: str) -> Response:
        web.require(request, REVIEWER)
        exam = await load_exam(exam_id)
        _, view = await view_of(exam)
        if view is None:
            raise Refused(404, "this exam's image was not kept")
        return Response(
            await asyncio.to_thread(view.original_png),
            media_type="image/png",
            headers={"Cache-Control": "private, no-store"},
        )

    @app.get("/exams/{exam_id}/aligned.png")
    async def aligned_png(request: Request, exam_id: str) -> Response:
        web.require(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        data = await asyncio.to_thread(view.aligned_png, layout) if view else None
        if data is None:
            raise Refused(404, "this exam has no aligned image")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    @app.get("/exams/{exam_id}/{what}/{name}.png")
    async def field_png(request: Request, exam_id: str, what: str, name: str) -> Response:
        web.require(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        data = None
        if view is not None and name in view.crops:
            data = (
                png(view.crops[name])
                if what == "crops"
                else view.region_png(layout, name)
                if what == "regions"
                else None
            )
        if data is None:
            raise Refused(404, "no such crop")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    def export_soon() -> None:
        if config.crops_dir is None or not export_running.acquire(blocking=False):
            return

        def run() -> None:
            from eyeops.review.cropset import export_crops

            try:
                assert config.crops_dir is not None
                manifest = export_crops(store, config.crops_dir)
                log.info(
                    "labelled crop set version %s: %s crops", manifest.get("version"), manifest.get("crops")
                )
            except Exception:
                log.exception("exporting the labelled crop set failed")
            finally:
                export_running.release()

        threading.Thread(target=run, name="crop-export", daemon=True).start()

    def version_of(form: dict[str, str]) -> int:
        try:
            return int(form.get("version", ""))
        except ValueError:
            raise Refused(400, "the form lacks the exam's version; reload the page") from None

    @app.post("/exams/{exam_id}/release")
    async def release(request: Request, exam_id: str) -> Response:
        session, form = await web.form_of(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        typed = {k.removeprefix("value__"): v for k, v in form.items() if k.startswith("value__")}
        confidences = {r.name: r.confidence for r in exam.record.fields}
        readings, problems = review_values(layout, typed, confidences)
        if view is None or not view.crops:
            message = "this exam has no aligned image: mark the screen's corners first, or reject it"
            return exam_page(request, session, exam, layout, view, status=422, typed=typed, message=message)
        if problems:
            web.refusals.labels("invalid_values").inc()
            return exam_page(
                request,
                session,
                exam,
                layout,
                view,
                status=422,
                typed=typed,
                problems={p.field: p.reason for p in problems},
                message="not released: correct the fields marked below",
            )
        labels = labels_for(layout, readings, typed, exam.record.fields, view.crops)
        try:
            sampled = _sampled(exam_id, config.second_look_share) and exam.released_by is None
            await asyncio.to_thread(
                store.release, exam_id, version_of(form), session.user, readings, labels, second_look=sampled
            )
        except Conflict as exc:
            web.refusals.labels("conflict").inc()
            fresh = await load_exam(exam_id)
            return exam_page(
                request, session, fresh, layout, view, status=409, typed=typed, message=exc.message
            )
        except NotReviewable as exc:
            return exam_page(request, session, exam, layout, view, status=409, message=exc.message)
        log.info("exam %s released by %s", exam_id[:12], session.user)
        export_soon()
        return RedirectResponse(f"/exams/{exam_id}?done=released", status_code=303)

    @app.post("/exams/{exam_id}/second-look")
    async def second_look(request: Request, exam_id: str) -> Response:
        session, form = await web.form_of(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout, view = await view_of(exam)
        typed = {k.removeprefix("value__"): v for k, v in form.items() if k.startswith("value__")}
        readings, problems = review_values(layout, typed)
        if problems:
            return exam_page(request, session, exam, layout, view, status=422, typed=typed,
                             problems={p.field: p.reason for p in problems},
                             message="not saved: correct the fields marked below")  # fmt: skip
        try:
            differ = await asyncio.to_thread(
                store.second_look, exam_id, version_of(form), session.user, readings
            )
        except (Conflict, NotReviewable) as exc:
            fresh = await load_exam(exam_id)
            return exam_page(request, session, fresh, layout, view, status=409, message=exc.message)
        return RedirectResponse(f"/exams/{exam_id}?done={'disagree' if differ else 'agree'}", status_code=303)

    @app.post("/exams/{exam_id}/reject")
    async def reject(request: Request, exam_id: str) -> Response:
        session, form = await web.form_of(request, REVIEWER)
        exam = await load_exam(exam_id)
        reason = " ".join(form.get("reason", "").split())[:200]
        if not reason:
            layout, view = await view_of(exam)
            return exam_page(
                request,
                session,
                exam,
                layout,
                view,
                status=422,
                message="not rejected: say why (wrong device, unreadable, not this patient)",
            )
        try:
            await asyncio.to_thread(store.reject, exam_id, version_of(form), session.user, reason)
        except (Conflict, NotReviewable) as exc:
            layout, view = await view_of(await load_exam(exam_id))
            return exam_page(request, session, exam, layout, view, status=409, message=exc.message)
        return RedirectResponse(f"/exams/{exam_id}?done=rejected", status_code=303)

    @app.post("/exams/{exam_id}/corners")
    async def corners(request: Request, exam_id: str) -> Response:
        session, form = await web.form_of(request, REVIEWER)
        exam = await load_exam(exam_id)
        layout = web.registry[exam.record.device_kind]
        if exam.image is None:
            raise Refused(409, "this exam's image was not kept; reject it")
        try:
            points = [[float(v) for v in pair.split(",")] for pair in form.get("corners", "").split(";")]
        except ValueError:
            raise Refused(
                400, "corners: send four x,y pairs separated by ';' (click the four corners)"
            ) from None
        if recognizer is None:
            raise Refused(503, "this console has no recogniser to read the exam again; ask an administrator")
        view = await asyncio.to_thread(view_exam, exam.image, layout, settings, points)
        readings = await asyncio.to_thread(
            reread, layout, view.crops, recognizer, settings.confidence_threshold
        )
        try:
            await asyncio.to_thread(store.reread, exam_id, version_of(form), session.user, points, readings)
        except (Conflict, NotReviewable) as exc:
            return exam_page(request, session, exam, layout, None, status=409, message=exc.message)
        return RedirectResponse(f"/exams/{exam_id}?done=reread", status_code=303)


def _sampled(exam_id: str, share: float) -> bool:
    """Whether a release is one of the `share` another reviewer checks: decided by the exam id (a
    hash), so the sample is reproducible and no one can choose it."""
    return int(exam_id[:8], 16) / 0x1_0000_0000 < share


def _screen_text(spec: FieldSpec, reading: FieldReading | None) -> str:
    """A field's current value as the device's screen writes it: a reviewed value in the field's own
    format (dates too); for a field in review, the arbitration's proposal (the better-validated of
    the two recognisers' readings, eyeops.ocr.arbitrate) when there is one; else the text the
    recogniser read."""
    if reading is None:
        return ""
    if reading.status == "reviewed" and reading.value is not None:
        if spec.kind == "date" and spec.date_format:
            return dt.date.fromisoformat(str(reading.value)).strftime(spec.date_format)
        return spec.format_value(reading.value)
    if reading.status == "review" and reading.proposal is not None:
        return reading.proposal.strip()
    return reading.raw_text.strip()
