"""Run by tests/integration/test_installed_package.py with the python of a venv where eyeops is
installed from its wheel, in a working folder outside the checkout (`python -I`, so the checkout is
not importable). Starts the real entrypoints from the installed package, as `eyeops up` does:
tritonserver on the shipped model repository + the OCR transformer, a gateway (`eyeops gateway
watch`) that delivers one rendered exam, and the lens predictor and transformer behind a Feast
repository made from the shipped template. Prints one JSON object with what it saw."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

import eyeops
import inference
import kfp_pipelines
from eyeops.devices import load_layouts
from eyeops.imageio import file_extension
from eyeops.settings import Settings
from eyeops.stack.lens import LensStack
from eyeops.stack.local import LocalStack
from eyeops.stack.process import free_port, free_triton_port
from eyeops.synth.exams import render_one

KIND = "optical_biometer"


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise TimeoutError(f"no {what} after {timeout_s:.0f} s")


def stored_exam(database: Path) -> dict[str, Any] | None:
    if not database.exists():
        return None
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT id, device_id, status FROM exams").fetchall()
        if not rows:
            return None
        fields = dict(conn.execute("SELECT name, raw_text FROM fields WHERE exam_id = ?", (rows[0][0],)))
    return {"exams": len(rows), "device_id": rows[0][1], "status": rows[0][2], "fields": fields}


def read_one_exam(settings: Settings, eyeops_bin: Path, work: Path) -> dict[str, Any]:
    exam = render_one(load_layouts()[KIND], 21, "eval", 0)
    exports = work / "exports"
    exports.mkdir()
    with LocalStack(settings, triton_port=free_triton_port(), ocr_port=free_port()) as endpoints:
        argv = [str(eyeops_bin), "gateway", "watch", str(exports), "--device-kind", KIND,
                "--device-id", "iolm-1", "--endpoint", endpoints.ocr]  # fmt: skip
        log = (work / "gateway.log").open("wb")
        gateway = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            name = f"exam-1.{file_extension(exam.image)}"  # a device exports PNG, JPEG or TIFF
            (exports / f"{name}.part").write_bytes(exam.image)
            os.replace(exports / f"{name}.part", exports / name)  # as many devices export: write, rename
            database = Path(endpoints.database_url.removeprefix("sqlite:///"))
            try:
                stored = wait_for(lambda: stored_exam(database), 120, "exam in the results database")
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; the gateway said:\n{(work / 'gateway.log').read_text()}") from exc
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)
            log.close()
    return {
        **stored,
        "truth": exam.texts,
        "database_url": endpoints.database_url,
        "gateway_log": (work / "gateway.log").read_text(),
    }


def recommend_one_eye(settings: Settings, eyeops_bin: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from eyeops.features import repository as fs
    from eyeops.lens.cohort import simulate_cohort

    lens = settings.data_dir / "lens"
    cohort = lens / "cohort.parquet"
    for argv in (
        ["synth", "cohort", "--n", "1500", "--seed", "3", "--out", str(cohort)],
        ["lens", "train", str(cohort), "--out", str(lens / "model"), "--version", "installed-1"],
    ):
        subprocess.run([str(eyeops_bin), *argv], check=True, stdout=subprocess.DEVNULL)
    eyes = simulate_cohort(5, seed=4)
    days = np.random.default_rng(4).integers(1, 100, len(eyes))
    eyes["exam_date"] = pd.Timestamp.now().normalize() - pd.to_timedelta(days, unit="D")
    repo = fs.prepare_repo(lens / "feature_repo")
    fs.write_offline_data(eyes, repo)
    fs.apply_and_materialize(fs.open_store(repo), repo)
    eye = str(eyes["eye_id"].iloc[0])
    with LensStack(lens / "model", repo, settings.data_dir / "log") as endpoints:
        r = httpx.post(
            f"{endpoints.lens}/v1/models/lens:predict", json={"instances": [{"eye_id": eye}]}, timeout=60
        )
    answer = r.json()["predictions"][0] if r.status_code == 200 else {}
    return {"status_code": r.status_code, "eye_id": eye, "answer": answer, "text": r.text[:500]}


def main() -> int:
    work = Path.cwd()
    eyeops_bin = Path(sys.executable).parent / "eyeops"
    settings = Settings()
    report: dict[str, Any] = {
        "modules": {m.__name__: m.__file__ for m in (eyeops, inference, kfp_pipelines)},
        "sys_path": sys.path,
        "data_dir": str(settings.data_dir),
        "triton_repository": str(settings.triton_repository),
    }
    report["ocr"] = read_one_exam(settings, eyeops_bin, work)
    report["lens"] = recommend_one_eye(settings, eyeops_bin)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
