"""Moved to `eyeops.features.ingest`; this name keeps working for one release."""

import warnings
from typing import Any

from eyeops.features.ingest import *  # noqa: F403
from eyeops.features.ingest import ExamFeatureSink
from eyeops.features.online import FeastOnlineStore


class FeastExamSink(ExamFeatureSink):
    """The sink on a Feast FeatureStore (now `ExamFeatureSink(FeastOnlineStore(store))`)."""

    def __init__(self, store: Any) -> None:
        super().__init__(FeastOnlineStore(store))


warnings.warn(
    "eyeops.lens.ingest moved to eyeops.features.ingest (FeastExamSink(store) is now"
    " ExamFeatureSink(FeastOnlineStore(store))); the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
