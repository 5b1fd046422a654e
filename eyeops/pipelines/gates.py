"""Which gate decides promotion for which registered model. It lives with the pipelines, above
the models it names: the registry below knows gates only as decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eyeops.registry.store import GateDecision, RegistryError

Gate = Callable[[dict[str, Any], dict[str, Any] | None], GateDecision]


def gate_for(model: str) -> Gate:
    from eyeops.lens.gate import gate as lens_gate
    from eyeops.monitoring.gate import gate as detectors_gate
    from eyeops.ocr.gate import gate as ocr_gate

    gates: dict[str, Gate] = {"lens": lens_gate, "ocr": ocr_gate, "detectors": detectors_gate}
    if model not in gates:
        raise RegistryError(f"no promotion gate for {model!r}; known: {', '.join(gates)}")
    return gates[model]
