"""Device layouts: one YAML file per device kind describes where every field sits and what it may say."""

from eyeops.devices.layout import (
    CrossCheck,
    DeviceLayout,
    FieldSpec,
    LayoutRegistry,
    TemplateSpec,
    load_layouts,
)

__all__ = [
    "CrossCheck",
    "DeviceLayout",
    "FieldSpec",
    "LayoutRegistry",
    "TemplateSpec",
    "load_layouts",
]
