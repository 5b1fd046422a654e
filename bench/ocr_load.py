"""Many clients at once against `eyeops up` on the embedded defaults (SQLite results database, the
local Feast repository with file offline store): exams/s, latency percentiles, and every non-200.

    .venv/bin/python -m bench.ocr_load --clients 32 --seconds 120
    .venv/bin/python -m bench.ocr_load --clients 32 --seconds 90 --baseline b40a418   # side by side

With --baseline REF, the same load runs first against REF's code (a `git worktree` of it, imported
ahead of the installed package, its own model repository) and then against this checkout's, in one
run on one machine, and the ratio of new exams/s is printed.

Starts its own `eyeops up` on free ports with EYEOPS_DATA_DIR in a temporary folder (or uses
--endpoint), renders distinct exams of the six device kinds (biometry, AS-OCT and refraction exams
are pushed to Feast when accepted), and prints one JSON object. The integration test
tests/integration/test_load.py runs the same code and checks nothing was lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import numpy as np

from eyeops.ocr.wire import exam_of_answer, v1_request
from eyeops.stack.process import free_port, free_triton_port
from eyeops.synth.exams import tagged_copy

KINDS = (
    "optical_biometer",
    "anterior_segment_oct",
    "autorefractor",
    "noncontact_tonometer",
    "scheimpflug_tomographer",
    "specular_microscope",
)


@dataclass(frozen=True)
class Exam:
    image: bytes
    device_kind: str

    def copy(self, n: int) -> tuple[str, bytes]:
        """The n-th distinct copy (same pixels, another file hash: a new exam to read) as its exam
        id and v1 request body."""
        image = tagged_copy(self.image, f"load-{n}") if n else self.image
        body = v1_request(image, self.device_kind, {})
        return hashlib.sha256(image).hexdigest(), json.dumps(body).encode()


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    answered: dict[str, dict[str, object]] = field(default_factory=dict)  # exam id → last 200 body
    transport_errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, object]:
        ok = self.statuses.get(200, 0)
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([0.0])
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 1),
            "requests": sum(self.statuses.values()) + sum(self.transport_errors.values()),
            "answered_200": ok,
            "distinct_exams_200": len(self.answered),
            "answers_per_s": round(ok / self.seconds, 2) if self.seconds else 0.0,
            "new_exams_per_s": round(len(self.answered) / self.seconds, 2) if self.seconds else 0.0,
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1),
            "non_200": {str(k): v for k, v in sorted(self.statuses.items()) if k != 200},
            "server_errors_5xx": sum(v for k, v in self.statuses.items() if k >= 500),
            "transport_errors": dict(self.transport_errors),
        }


def render_exams(count: int, seed: int = 4242) -> list[Exam]:
    """`count` distinct rendered exams, the six device kinds in turn."""
    from eyeops.devices import load_layouts
    from eyeops.synth.exams import render_one

    layouts = load_layouts()
    exams = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        exams.append(Exam(render_one(layouts[kind], seed, "eval", i).image, kind))
    return exams


async def run_load(
    url: str,
    exams: Sequence[Exam],
    clients: int,
    seconds: float,
    resend_every: int = 0,
    token: str | None = None,
) -> LoadResult:
    """`clients` concurrent clients, each sending the next exam as soon as its last answer came, for
    `seconds`. Every request is a new exam (the rendered ones in turn, each later round a distinct
    copy), except that every `resend_every`-th request re-sends an earlier exam, as a gateway that
    lost an answer would. aiohttp: cheap enough to share two cores with the server."""
    result = LoadResult(clients, 0.0)
    next_index = 0
    deadline = time.monotonic() + seconds
    predict = f"{url}/v1/models/ocr:predict"
    timeout = aiohttp.ClientTimeout(total=120)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"  # a device's token (`eyeops up`: local-device)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while time.monotonic() < deadline:
            n = next_index
            next_index += 1
            if resend_every and n % resend_every == resend_every - 1:
                n //= 2  # an exam sent before
            exam_id, body = exams[n % len(exams)].copy(n // len(exams))
            t0 = time.perf_counter()
            try:
                async with session.post(predict, data=body, headers=headers) as response:
                    payload = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.transport_errors[type(exc).__name__] += 1
                await asyncio.sleep(0.5)
                continue
            result.latencies_ms.append((time.perf_counter() - t0) * 1e3)
            result.statuses[status] += 1
            if status == 200:
                answer = exam_of_answer(json.loads(payload))
                assert answer["exam_id"] == exam_id
                result.answered[exam_id] = answer
            elif status >= 500:
                await asyncio.sleep(0.5)

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    result.seconds = time.monotonic() - started
    return result


@dataclass
class UpProcess:
    """`eyeops up` as a user starts it, on free ports, with its data under `data_dir`."""

    data_dir: Path
    proc: subprocess.Popen[bytes]
    ocr: str
    lens: str
    log: Path

    @classmethod
    def start(
        cls, data_dir: Path, timeout_s: float = 600.0, extra: Sequence[str] = (), code: Path | None = None
    ) -> UpProcess:
        """`code`: a source tree to run instead of the installed eyeops (put first on PYTHONPATH)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        triton, ocr, lens = free_triton_port(), free_port(), free_port()
        env = {**os.environ, "EYEOPS_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
        if code is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH", "")) if p)
        log = data_dir / "eyeops-up.log"
        argv = [sys.executable, "-m", "eyeops.cli", "up", "--triton-port", str(triton)]
        argv += ["--ocr-port", str(ocr), "--lens-port", str(lens), *extra]
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data_dir)
        up = cls(data_dir, proc, f"http://127.0.0.1:{ocr}", f"http://127.0.0.1:{lens}", log)
        up.wait_ready(timeout_s)
        return up

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"eyeops up exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                if (
                    httpx.get(f"{self.ocr}/v2/models/ocr/ready", timeout=2).status_code == 200
                    and httpx.get(f"{self.lens}/v2/models/lens/ready", timeout=2).status_code == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"eyeops up not ready after {timeout_s:.0f} s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def device_token(self) -> str:
        """The token `eyeops up` made for its first device (`local-device`)."""
        return (self.data_dir / "credentials" / "local-device.token").read_text().strip()

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--exams", type=int, default=120, help="exams rendered (later rounds: copies)")
    parser.add_argument("--resend-every", type=int, default=10, help="every N-th request re-sends an exam")
    parser.add_argument("--endpoint", default=None, help="a running OCR service (default: start one)")
    parser.add_argument("--token-file", type=Path, default=None, help="a device token for --endpoint")
    parser.add_argument("--baseline", default=None, help="a git ref to measure first, side by side")
    args = parser.parse_args(argv)
    exams = render_exams(args.exams)
    if args.endpoint:
        token = args.token_file.read_text().strip() if args.token_file else None
        result = asyncio.run(
            run_load(args.endpoint, exams, args.clients, args.seconds, args.resend_every, token)
        )
        print(json.dumps(result.summary()))
        return 0
    parsed_clients, parsed_seconds = args.clients, args.seconds
    runs: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="eyeops-load-") as tmp:
        trees: list[tuple[str, Path | None]] = [("this checkout", None)]
        if args.baseline:
            tree = Path(tmp) / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), args.baseline],
                check=True,
                capture_output=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            here = Path(__file__).resolve().parents[1]
            for env in (".venv", ".venv-triton", ".venv-detectors", ".triton"):  # the same environments
                if (here / env).exists():
                    (tree / env).symlink_to(here / env)
            trees.insert(0, (f"baseline {args.baseline}", tree))
        try:
            for label, code in trees:
                up = UpProcess.start(Path(tmp) / f"site-{len(runs)}", code=code)
                try:
                    result = asyncio.run(
                        run_load(
                            up.ocr,
                            exams,
                            parsed_clients,
                            parsed_seconds,
                            args.resend_every,
                            up.device_token(),
                        )
                    )
                finally:
                    up.stop()
                runs[label] = result.summary()
                print(json.dumps({label: runs[label]}), flush=True)
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(Path(tmp) / "baseline")], check=False
                )
    if len(runs) == 2:
        (old_label, old), (new_label, new) = runs.items()
        ratio = float(str(new["new_exams_per_s"])) / max(float(str(old["new_exams_per_s"])), 1e-9)
        print(json.dumps({"new_exams_per_s_ratio": round(ratio, 2), "of": [new_label, old_label]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
