"""Moved to `eyeops.features` (the repository in `repository`, the offline log in `offline_log`,
online reads and pushes through `online.FeastOnlineStore`); this name keeps working for one
release."""

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from eyeops.features.offline_log import *  # noqa: F403
from eyeops.features.offline_log import postgres_engine as _postgres_engine  # noqa: F401
from eyeops.features.online import FeastOnlineStore, Row
from eyeops.features.repository import *  # noqa: F403


def online_rows(store: Any, eye_ids: Sequence[str]) -> list[dict[str, Any]]:
    return FeastOnlineStore(store).read(eye_ids)


def online_rows_frame(store: Any, eye_ids: Sequence[str]) -> pd.DataFrame:
    return FeastOnlineStore(store).read_frame(eye_ids)


def push_rows(store: Any, view: str, rows: Sequence[Row]) -> None:
    FeastOnlineStore(store).push(view, rows)


def push_exam(
    store: Any, view: str, eye_id: str, values: Mapping[str, Any], measured_at: dt.datetime
) -> None:
    FeastOnlineStore(store).push(view, [(eye_id, values, measured_at)])


warnings.warn(
    "eyeops.lens.feature_store moved to eyeops.features (repository, offline_log, and"
    " online.FeastOnlineStore for reads and pushes); the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
