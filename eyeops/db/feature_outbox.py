"""Moved to `eyeops.features.outbox`; this name keeps working for one release."""

import warnings

from eyeops.features.outbox import *  # noqa: F403

warnings.warn(
    "eyeops.db.feature_outbox moved to eyeops.features.outbox; the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
