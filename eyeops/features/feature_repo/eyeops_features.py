"""Feast definitions for the lens service: entity `eye`, one feature view per device kind (plus
demographics), push sources the OCR service writes accepted exams to, and an on-demand view whose
transformation is the same function training uses (eyeops.lens.features.derive_features)."""

from __future__ import annotations

import os
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from eyeops.features.views import (
    ENTITY,
    FEATURE_SERVICE,
    JOIN_KEY,
    ON_DEMAND_VIEW,
    TTL_DAYS,
    VIEWS,
    push_source_name,
)

_TYPES = {"float": Float64, "int": Int64, "string": String}

eye = Entity(name=ENTITY, join_keys=[JOIN_KEY], value_type=ValueType.STRING, description="patient_id-OD|OS")

feature_views: dict[str, FeatureView] = {}
for _view, (_device, _columns) in VIEWS.items():
    if os.environ.get("EYEOPS_FEAST_OFFLINE", "file") == "postgres":  # the cluster profile
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
            PostgreSQLSource,
        )

        _batch = PostgreSQLSource(
            name=f"{_view}_pg",
            table=f"lens_{_view}",
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        )
    else:
        _batch = FileSource(
            name=f"{_view}_file",
            path=f"data/{_view}.parquet",
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        )
    _push = PushSource(name=push_source_name(_view), batch_source=_batch)
    feature_views[_view] = FeatureView(
        name=_view,
        entities=[eye],
        ttl=timedelta(days=TTL_DAYS),
        schema=[Field(name=c, dtype=_TYPES[t]) for c, t in _columns.items()],
        source=_push,
        online=True,
        tags={"device_kind": _device},
    )

biometry = feature_views["biometry"]
anterior_segment = feature_views["anterior_segment"]
refraction = feature_views["refraction"]
demographics = feature_views["demographics"]


@on_demand_feature_view(
    name=ON_DEMAND_VIEW,
    sources=[biometry, anterior_segment, refraction],
    schema=[
        Field(name="km_d", dtype=Float64),
        Field(name="ata_minus_wtw_mm", dtype=Float64),
        Field(name="spherical_equivalent_d", dtype=Float64),
    ],
    mode="pandas",
)
def derived(inputs: pd.DataFrame) -> pd.DataFrame:
    # Feast stores this body as text and runs it without this module's globals: import inside.
    from eyeops.lens.features import derive_features

    return derive_features(inputs)


lens_v1 = FeatureService(
    name=FEATURE_SERVICE,
    features=[biometry, anterior_segment, refraction, demographics, derived],
)
