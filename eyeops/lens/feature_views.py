"""Moved to `eyeops.features.views`; this name keeps working for one release."""

import warnings

from eyeops.features.views import *  # noqa: F403
from eyeops.features.views import FeastType as FeastType

warnings.warn(
    "eyeops.lens.feature_views moved to eyeops.features.views; the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
