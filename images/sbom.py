"""A CycloneDX 1.5 SBOM of the environment this interpreter runs in, printed as JSON.

scripts/images.sh runs it inside every image, with the image's own Python, read-only and without
network: the Python distributions the interpreter sees (name, version, licence, purl pkg:pypi) and
the Debian packages dpkg installed (purl pkg:deb/debian). Standard library only.

    python sbom.py IMAGE_TAG > image.cdx.json
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import uuid
from importlib import metadata
from pathlib import Path

DPKG_STATUS = Path("/var/lib/dpkg/status")


def _pypi_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def python_components() -> list[dict[str, object]]:
    seen: dict[str, dict[str, object]] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if not name:
            continue
        key = _pypi_name(name)
        component: dict[str, object] = {
            "type": "library",
            "bom-ref": f"pkg:pypi/{key}@{dist.version}",
            "name": name,
            "version": dist.version,
            "purl": f"pkg:pypi/{key}@{dist.version}",
        }
        licence = dist.metadata.get("License-Expression") or dist.metadata.get("License")
        if licence and len(licence) <= 100 and "\n" not in licence:
            component["licenses"] = [{"license": {"name": licence}}]
        seen[key] = component
    return [seen[k] for k in sorted(seen)]


def debian_components() -> list[dict[str, object]]:
    if not DPKG_STATUS.exists():
        return []
    out = []
    for stanza in DPKG_STATUS.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.MULTILINE))
        if "install ok installed" not in fields.get("Status", "") or "Package" not in fields:
            continue
        name, version = fields["Package"], fields.get("Version", "")
        arch = fields.get("Architecture", "all")
        purl = f"pkg:deb/debian/{name}@{version}?arch={arch}"
        out.append({"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl})
    return sorted(out, key=lambda c: str(c["name"]))


def sbom(image: str) -> dict[str, object]:
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "eyeops images/sbom.py"}]},
            "component": {"type": "container", "name": image, "bom-ref": image},
        },
        "components": python_components() + debian_components(),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python sbom.py IMAGE_TAG", file=sys.stderr)
        raise SystemExit(2)
    json.dump(sbom(sys.argv[1]), sys.stdout, indent=1)
    sys.stdout.write("\n")
