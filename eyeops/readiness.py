"""`python -m eyeops.readiness URL...`: exit 0 when every URL answers 200 (the chart's `helm test`)."""

from __future__ import annotations

import sys
import time

import httpx


def check(urls: list[str], attempts: int = 10, wait_s: float = 3.0) -> list[str]:
    """The URLs still not answering 200 after `attempts` tries each."""
    failing = []
    for url in urls:
        for attempt in range(attempts):
            try:
                if httpx.get(url, timeout=10).status_code == 200:
                    print(f"ready: {url}")
                    break
            except httpx.HTTPError:
                pass
            if attempt + 1 < attempts:
                time.sleep(wait_s)
        else:
            failing.append(url)
            print(f"NOT ready: {url}", file=sys.stderr)
    return failing


def main(argv: list[str] | None = None) -> int:
    urls = list(sys.argv[1:] if argv is None else argv)
    if not urls:
        print("usage: python -m eyeops.readiness URL [URL ...]", file=sys.stderr)
        return 2
    return 1 if check(urls) else 0


if __name__ == "__main__":
    sys.exit(main())
