"""The latency cost of authentication on the lens endpoint, side by side in one run on one machine:

  A. the lens stack with authentication: the transformer checks a client's bearer token, and sends
     its own service token to the predictor, which checks it;
  B. the same model, Feast repository and eyes, both servers started with --insecure.

Open loop at a fixed arrival rate (bench.lens_latency's), phases alternating A, B, A, B.
Prints one JSON object with both sides and their ratios.
Run:  .venv/bin/python -m bench.lens_auth [--rate 40] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from bench.lens_latency import open_loop, summary
from eyeops.auth import bearer
from eyeops.stack.credentials import LocalCredentials
from eyeops.stack.lens import LensStack, prepare_local_lens


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eyeops-lens-auth-bench-") as tmp:
        root = Path(tmp)
        model_dir, repo, eye_ids = prepare_local_lens(root, say=lambda m: None)
        credentials = LocalCredentials.provision(root / "credentials")
        bodies = [{"instances": [{"eye_id": e}]} for e in eye_ids]
        secured = LensStack(model_dir, repo, root / "log", credentials=credentials)
        insecure = LensStack(model_dir, repo, root / "log-insecure")
        with secured as a, insecure as b:
            sides = {
                "authenticated": (f"{a.lens}/v1/models/lens:predict", bearer(credentials.client_token)),
                "insecure": (f"{b.lens}/v1/models/lens:predict", {}),
            }
            for url, headers in sides.values():
                asyncio.run(open_loop(url, bodies, 10, 2, headers))  # warm
            results: dict[str, list[float]] = {name: [] for name in sides}
            errors = dict.fromkeys(sides, 0)
            for _ in range(2):
                for name, (url, headers) in sides.items():
                    lat, err = asyncio.run(open_loop(url, bodies, args.rate, args.seconds / 2, headers))
                    results[name] += lat
                    errors[name] += err
    with_auth = summary(results["authenticated"], errors["authenticated"])
    without = summary(results["insecure"], errors["insecure"])
    out = {
        "rate_per_s": args.rate,
        "seconds_per_side": args.seconds,
        "authenticated": with_auth,
        "insecure": without,
        "p50_ratio": round(float(with_auth["p50_ms"]) / float(without["p50_ms"]), 3),
        "p95_ratio": round(float(with_auth["p95_ms"]) / float(without["p95_ms"]), 3),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
