"""Which gate decides promotion for which registered model. It lives with the pipelines, above
the models it names: the registry below knows gates only as decisions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eyeops.registry.store import GateDecision, ModelRegistry, ModelVersion, RegistryError

Gate = Callable[[dict[str, Any], dict[str, Any] | None], GateDecision]


def gate_for(model: str) -> Gate:
    from eyeops.lens.gate import gate as lens_gate
    from eyeops.monitoring.gate import gate as detectors_gate
    from eyeops.ocr.gate import gate as ocr_gate

    gates: dict[str, Gate] = {"lens": lens_gate, "ocr": ocr_gate, "detectors": detectors_gate}
    if model not in gates:
        raise RegistryError(f"no promotion gate for {model!r}; known: {', '.join(gates)}")
    return gates[model]


@dataclass(frozen=True)
class Registered:
    verdict: GateDecision
    version: ModelVersion
    champion_before: str | None


def register_through_gate(
    registry: ModelRegistry,
    model: str,
    version: str,
    artifact: Path,
    metrics: dict[str, Any],
    before_register: Callable[[GateDecision], None] | None = None,
    **metadata: Any,
) -> Registered:
    """Register `artifact` with its gate's verdict against the current champion, and promote it
    when the gate passes. `before_register` sees the verdict first and may refuse by raising (the
    pipelines' rollout plan does: nothing is registered when the cluster cannot take the rollout)."""
    champion = registry.champion(model)
    verdict = gate_for(model)(metrics, champion.metrics if champion else None)
    if before_register is not None:
        before_register(verdict)
    registered = registry.register(
        model,
        version,
        artifact,
        metrics,
        gate_reasons=verdict.reasons,
        gate_promoted=verdict.promote,
        champion_before=champion.version if champion else None,
        **metadata,
    )
    if verdict.promote:
        registry.promote(model, version, "; ".join(verdict.reasons))
    return Registered(verdict, registered, champion.version if champion else None)
