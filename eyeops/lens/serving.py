"""What the lens transformer does with an eye's online features, apart from KServe and Feast."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eyeops.errors import EyeopsError
from eyeops.features.views import TTL_DAYS, view_of_column
from eyeops.lens.features import BASE_FEATURES, MissingFeatures

TIMESTAMP_SUFFIX = "__ts"


class EyeNotFound(EyeopsError):
    """No features at all for this eye. HTTP 404."""

    status_code = 404


@dataclass
class EyeFeatures:
    eye_id: str
    features: dict[str, float]
    stale: list[str] = field(default_factory=list)  # feature views older than their TTL
    measured_at: dict[str, str] = field(default_factory=dict)  # view → ISO time of its latest exam


def eye_features(
    rows: Sequence[Mapping[str, Any]], eye_ids: Sequence[str], now: dt.datetime, ttl_days: int = TTL_DAYS
) -> list[EyeFeatures]:
    """Check every eye's online row: unknown → 404, missing features → 422 naming them (never
    imputed), features older than the TTL → kept but flagged stale."""
    out = []
    for n, (eye_id, row) in enumerate(zip(eye_ids, rows, strict=True)):
        # Errors name the eye by its place in the request, never by its id (patient data).
        missing = [f for f in BASE_FEATURES if row.get(f) is None]
        if len(missing) == len(BASE_FEATURES):
            raise EyeNotFound(f"no features for eye {n} of the request; it has no accepted exams yet")
        if missing:
            views = sorted({view_of_column(f) for f in missing})
            raise MissingFeatures(
                f"eye {n} of the request lacks {', '.join(missing)} (feature views {', '.join(views)}): "
                "read the missing exams before asking for a recommendation"
            )
        stale: set[str] = set()
        measured: dict[str, str] = {}
        for name in BASE_FEATURES:
            seconds = row.get(name + TIMESTAMP_SUFFIX)
            if seconds is None:
                continue
            when = dt.datetime.fromtimestamp(float(seconds), dt.UTC)
            view = view_of_column(name)
            measured[view] = when.isoformat()
            if now - when > dt.timedelta(days=ttl_days):
                stale.add(view)
        out.append(EyeFeatures(eye_id, {f: float(row[f]) for f in BASE_FEATURES}, sorted(stale), measured))
    return out
