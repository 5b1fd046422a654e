"""`eyeops demo`: the local stack, one gateway per simulated device, rendered exams dropped into their
export folders, and a summary scored against the ground truth the renderer knows."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from eyeops.auth import bearer
from eyeops.db.store import ResultsStore
from eyeops.devices import load_layouts
from eyeops.gateway.outbox import Outbox
from eyeops.imageio import file_extension
from eyeops.ocr.evaluate import EvalRun
from eyeops.settings import Settings
from eyeops.stack.credentials import LocalCredentials
from eyeops.stack.devices import SimulatedDevice, gateway_process, provision_devices
from eyeops.stack.lens import LensEndpoints, LensStack, prepare_local_lens
from eyeops.stack.local import LocalStack
from eyeops.stack.monitor import MonitorStack, prepare_local_detectors
from eyeops.synth.exams import synthesize_exams
from eyeops.synth.render import RenderedExam

FINAL = ("done", "failed", "quarantined")


def exam_file_name(exam: RenderedExam, index: int) -> str:
    return f"exam-{index:05d}.{file_extension(exam.image)}"


def run_demo(
    settings: Settings,
    count: int,
    seed: int,
    per_kind: int = 1,
    timeout_s: float = 1800.0,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    layouts = load_layouts()
    kinds = layouts.kinds()
    root = settings.data_dir / "demo" / f"seed-{seed}"
    shutil.rmtree(root, ignore_errors=True)
    registry, devices = provision_devices(root, kinds, per_kind)
    credentials = LocalCredentials.provision(root / "credentials", device_registry=registry)
    say(f"rendering {count} exams over {len(kinds)} device kinds (seed {seed}) ...")
    exams = list(synthesize_exams(list(layouts), count, seed, split="eval"))
    by_sha = {hashlib.sha256(e.image).hexdigest(): e for e in exams}
    log_dir = settings.data_dir / "log"
    model_dir, repo, eye_ids = prepare_local_lens(settings.data_dir / "lens", say=say)
    detectors = prepare_local_detectors(settings.data_dir / "lens", model_dir, say=say)
    with ExitStack() as stack:
        (root / "monitor.db").unlink(missing_ok=True)
        monitor = stack.enter_context(
            MonitorStack(detectors, root / "monitor.db", log_dir, credentials=credentials, kinds=kinds)
        )
        say(f"monitor up: {monitor}/metrics (the servers log to it as KServe's logger would)")
        endpoints = stack.enter_context(
            LocalStack(settings, device_tokens=registry, logger_url=monitor, credentials=credentials)
        )
        say(f"stack up: OCR {endpoints.ocr}; starting {len(devices)} device gateways")
        gateways = [gateway_process(d, endpoints.ocr, log_dir) for d in devices]
        for g in gateways:
            stack.enter_context(g)
        for g in gateways:
            g.wait_ready(120)
        by_kind: dict[str, list[SimulatedDevice]] = {}
        for d in devices:
            by_kind.setdefault(d.device_kind, []).append(d)
        started = time.time()
        for i, exam in enumerate(exams):
            owners = by_kind[exam.device_kind]
            owners[i % len(owners)].drop(exam_file_name(exam, i), exam.image)
        say(f"dropped {len(exams)} exam files into {len(devices)} export folders; gateways delivering ...")
        _wait_delivered(devices, len(set(by_sha)), timeout_s, say)
        elapsed = time.time() - started
        store = ResultsStore.from_url(endpoints.database_url)
        in_db = sum(store.get_exam(sha) is not None for sha in by_sha)
        lens = stack.enter_context(
            LensStack(model_dir, repo, log_dir, logger_url=monitor, credentials=credentials)
        )
        say(f"lens service up: {lens.lens}/v1/models/lens:predict (Feast repository {repo})")
        summary_lens = recommend_some(lens, eye_ids, root, bearer(credentials.client_token))
        drift = inject_shift(monitor, lens, seed, say, credentials)
    run = _score(devices, by_sha)
    delivery_ms = run.latencies_ms  # file captured -> result stored
    summary = run.summary()
    summary.update(
        seed=seed,
        files=len(exams),
        exams_in_database=in_db,
        delivery_ms_p50=float(np.percentile(delivery_ms, 50)) if delivery_ms else None,
        delivery_ms_p95=float(np.percentile(delivery_ms, 95)) if delivery_ms else None,
        exams_per_s=round(len(exams) / elapsed, 2),
        database_url=endpoints.database_url,
        demo_dir=str(root),
        recommendations=summary_lens,
        drift=drift,
    )
    return summary


def recommend_some(
    endpoints: LensEndpoints, eye_ids: list[str], root: Path, auth: dict[str, str], count: int = 3
) -> list[dict[str, Any]]:
    """The lens service on simulated eyes: a few recommendations through Feast, each with a plot."""
    import httpx

    from eyeops.lens.plot import plot_recommendation

    answers = []
    for eye_id in eye_ids[:count]:
        response = httpx.post(
            f"{endpoints.lens}/v1/models/lens:predict",
            json={"instances": [{"eye_id": eye_id}]},
            headers=auth,
            timeout=30,
        )
        response.raise_for_status()
        answer = response.json()["predictions"][0]
        plot = root / "recommendations" / f"{eye_id}.png"
        plot_recommendation(answer, plot)
        answers.append({**answer, "plot": str(plot)})
    return answers


def _finished(devices: list[SimulatedDevice]) -> int:
    total = 0
    for d in devices:
        counts = d.counts()
        total += sum(counts.get(s, 0) for s in FINAL)
    return total


def _wait_delivered(
    devices: list[SimulatedDevice], expected: int, timeout_s: float, say: Callable[[str], None]
) -> None:
    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    while time.monotonic() < deadline:
        done = _finished(devices)
        if done >= expected:
            return
        if time.monotonic() - last_report > 10:
            say(f"  {done}/{expected} delivered")
            last_report = time.monotonic()
        time.sleep(0.5)
    raise TimeoutError(f"gateways delivered {_finished(devices)} of {expected} exams in {timeout_s:.0f}s")


def _score(devices: list[SimulatedDevice], by_sha: dict[str, RenderedExam]) -> EvalRun:
    """Score every delivered exam; the run's latencies are the delivery times."""
    run = EvalRun()
    for d in devices:
        outbox = Outbox(d.outbox_path)
        try:
            rows = list(outbox.results())
        finally:
            outbox.close()
        for row in rows:
            exam = by_sha.get(row["sha256"])
            if exam is None:
                continue
            if row["state"] == "done" and row["result"] is not None:
                run.score(exam, row["result"])
                run.duplicates += bool(row["result"].get("duplicate"))
                run.latencies_ms.append((row["finished_at"] - row["received_at"]) * 1e3)
            elif row["http_status"] == 422:
                run.score(exam, {"status": "failed", "fields": []})
            else:
                run.http_errors[str(row["http_status"] or row["state"])] += 1
    return run


def inject_shift(
    monitor: str,
    endpoints: LensEndpoints,
    seed: int,
    say: Callable[[str], None],
    credentials: LocalCredentials,
) -> dict[str, Any]:
    """A device whose white-to-white reads 0.6 mm too large: eyes with shifted WTW go through the
    lens predictor (as the transformer would send them) until the monitor's detectors flag it."""
    import httpx

    from eyeops.lens.cohort import simulate_cohort
    from eyeops.lens.features import BASE_FEATURES, PLAUSIBLE

    eyes = simulate_cohort(400, seed % 100_000 + 17)
    eyes["wtw_mm"] += 0.6
    # The predictor refuses (422) a shifted eye pushed past the plausible range, as it would a real
    # one; the shift that reaches the monitor is the rest (which drew that eye depends on the seed).
    low, high = PLAUSIBLE["wtw_mm"]
    eyes = eyes[eyes["wtw_mm"].between(low, high)]
    say(f"injecting a shift: WTW +0.6 mm on {len(eyes)} plausible eyes sent to the lens predictor ...")
    status: dict[str, Any] = {}
    n = 0
    as_transformer, as_operator = bearer(credentials.predictor_token), bearer(credentials.monitor_token)
    for n, (_, eye) in enumerate(eyes.iterrows(), start=1):
        instance = {f: float(eye[f]) for f in BASE_FEATURES}
        httpx.post(
            f"{endpoints.predictor}/v1/models/lens:predict",
            json={"instances": [instance]},
            headers=as_transformer,
            timeout=30,
        ).raise_for_status()
        if n % 50 == 0:
            time.sleep(0.5)  # the logger sends asynchronously; let it catch up
            status = httpx.get(f"{monitor}/status", headers=as_operator, timeout=10).json()
            if any(d["is_drift"] for d in status["detectors"].values()):
                break
    fired = {k: v for k, v in status.get("detectors", {}).items() if v["is_drift"]}
    metrics = httpx.get(f"{monitor}/metrics", timeout=10).text
    flags = [line for line in metrics.splitlines() if line.startswith("eyeops_drift_is_drift{")]
    if fired:
        say(f"drift detected after {n} shifted eyes by {', '.join(sorted(fired))}; the monitor exposes")
        for line in flags:
            say(f"  {line}")
        say("  → Prometheus alert EyeopsLensFeatureDrift / EyeopsLensFeatureDriftOnline fires on these")
    else:
        say(f"no drift flagged after {n} shifted eyes")
    return {"shifted_eyes_sent": n, "detectors_flagged": sorted(fired)}
