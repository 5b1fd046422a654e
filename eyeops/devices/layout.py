"""Layout schema and loading. Adding a device kind is adding a YAML file under layouts/."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from eyeops.errors import LayoutError, UnknownDeviceKind

BLANK_MARKER = "---"
Box = tuple[int, int, int, int]


class FieldSpec(BaseModel):
    """One value on a device screen: where it is and what a valid reading looks like."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    label: str
    box: Box = Field(description="ROI in template pixels: x, y, width, height")
    kind: Literal["number", "text", "date"] = "number"
    unit: str | None = None
    decimals: int = 0
    range: tuple[float, float] | None = None
    typical: tuple[float, float] | None = Field(default=None, description="mean, SD")
    step: float | None = None
    show_plus: bool = False
    optional: bool = False
    pattern: str | None = Field(default=None, description="regex for text/date fields")
    date_format: str | None = None

    @model_validator(mode="after")
    def _check(self) -> FieldSpec:
        if self.kind == "number" and self.range is None:
            raise ValueError(f"numeric field {self.name} needs a range")
        if self.kind != "number" and self.pattern is None:
            raise ValueError(f"{self.kind} field {self.name} needs a pattern")
        if self.kind == "date" and self.date_format is None:
            raise ValueError(f"date field {self.name} needs a date_format")
        _, _, w, h = self.box
        if w <= 0 or h <= 0:
            raise ValueError(f"field {self.name} has an empty box")
        return self

    @cached_property
    def grammar(self) -> str:
        """The regex a complete reading of this field must match (anchors implied)."""
        if self.pattern is not None:
            core = self.pattern
        else:
            assert self.range is not None
            lo, hi = self.range
            int_digits = len(str(int(max(abs(lo), abs(hi)))))
            sign = "[-+]" if self.show_plus else "-?" if lo < 0 else ""
            if self.show_plus:
                sign += "?"
            digits = rf"\d{{1,{int_digits}}}"
            frac = rf"\.\d{{{self.decimals}}}" if self.decimals > 0 else ""
            core = f"{sign}{digits}{frac}"
        if self.optional:
            return f"(?:{re.escape(BLANK_MARKER)}|{core})"
        return core

    def format_value(self, value: float | str | None) -> str:
        """Render a value the way the device prints it."""
        if value is None:
            if not self.optional:
                raise ValueError(f"field {self.name} is not optional")
            return BLANK_MARKER
        if self.kind != "number":
            return str(value)
        spec = f"{'+' if self.show_plus else ''}.{self.decimals}f"
        text = format(float(value), spec)
        if text in ("-0", "-0.0", "-0.00"):
            text = text[1:]
        return text


class CrossCheck(BaseModel):
    """A relation between fields that a correct reading satisfies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Literal["ordered", "mean", "reciprocal"]
    fields: tuple[str, ...]
    tolerance: float = 0.0
    constant: float | None = None

    @model_validator(mode="after")
    def _check(self) -> CrossCheck:
        need = {"ordered": 2, "reciprocal": 2}.get(self.rule)
        if need is not None and len(self.fields) != need:
            raise ValueError(f"{self.rule} takes {need} fields")
        if self.rule == "mean" and len(self.fields) < 3:
            raise ValueError("mean takes a target and at least two sources")
        if self.rule == "reciprocal" and self.constant is None:
            raise ValueError("reciprocal needs a constant")
        return self

    def describe(self) -> str:
        if self.rule == "ordered":
            return f"{self.fields[1]} >= {self.fields[0]}"
        if self.rule == "mean":
            return f"{self.fields[0]} = mean({', '.join(self.fields[1:])})"
        return f"{self.fields[0]} = {self.constant} / {self.fields[1]}"


class TemplateSpec(BaseModel):
    """The fixed drawing of a device's result screen, in template pixels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int
    height: int
    frame_inset: int = Field(default=0, description="inner edge of the frame line, from each side")
    frame_width: int = 6
    title: str = ""
    title_box: Box = Field(default=(0, 0, 0, 0), description="where the title is drawn; zeros: none")
    style: Literal["screen", "print"] = "screen"
    value_align: Literal["left", "right"] = "left"
    reference: str | None = Field(
        default=None,
        description="the device's own export with its values masked (a PNG beside the YAML, "
        "template.width × template.height): alignment registers each exam to it first",
    )


class DeviceLayout(BaseModel):
    """A device kind: its template, header fields, measurement fields and cross-field checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    description: str
    template: TemplateSpec
    header: tuple[FieldSpec, ...]
    fields: tuple[FieldSpec, ...]
    checks: tuple[CrossCheck, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> DeviceLayout:
        names = [f.name for f in self.all_fields()]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate field names: {sorted(dupes)}")
        header_names = {f.name for f in self.header}
        if header_names != {"patient_id", "laterality", "exam_date"}:
            raise ValueError("header must hold patient_id, laterality and exam_date")
        for check in self.checks:
            missing = [n for n in check.fields if n not in names]
            if missing:
                raise ValueError(f"check {check.describe()} names unknown fields {missing}")
        t = self.template
        inner = (t.frame_inset, t.frame_inset, t.width - t.frame_inset, t.height - t.frame_inset)
        for f in self.all_fields():
            x, y, w, h = f.box
            if x < inner[0] or y < inner[1] or x + w > inner[2] or y + h > inner[3]:
                raise ValueError(f"field {f.name} box {f.box} lies outside the frame")
        return self

    def all_fields(self) -> Iterator[FieldSpec]:
        yield from self.header
        yield from self.fields

    def field(self, name: str) -> FieldSpec:
        for f in self.all_fields():
            if f.name == name:
                return f
        raise KeyError(name)


class LayoutRegistry:
    """The device kinds known to this process, by name."""

    def __init__(self, layouts: dict[str, DeviceLayout]) -> None:
        self._layouts = dict(layouts)

    def __getitem__(self, kind: str) -> DeviceLayout:
        try:
            return self._layouts[kind]
        except KeyError:
            raise UnknownDeviceKind(
                f"unknown device kind; known kinds: {', '.join(self.kinds())}"
            ) from None

    def __contains__(self, kind: object) -> bool:
        return kind in self._layouts

    def kinds(self) -> list[str]:
        return sorted(self._layouts)

    def __iter__(self) -> Iterator[DeviceLayout]:
        return iter(self._layouts[k] for k in self.kinds())


def default_layout_dir() -> Path:
    return Path(__file__).resolve().parent / "layouts"


LAYOUT_DIRS_ENV = "EYEOPS_LAYOUT_DIRS"


def extra_layout_dirs() -> list[Path]:
    """Folders of onboarded devices, from EYEOPS_LAYOUT_DIRS (separated like PATH)."""
    return [Path(p) for p in os.environ.get(LAYOUT_DIRS_ENV, "").split(os.pathsep) if p]


def load_layout_file(path: Path) -> DeviceLayout:
    """One layout file; its reference image, if it names one, resolved beside it and checked."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        layout = DeviceLayout.model_validate(raw)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise LayoutError(f"layout {path.name}: {exc}") from exc
    if layout.kind != path.stem:
        raise LayoutError(f"layout {path.name} declares kind {layout.kind!r}")
    if layout.template.reference is not None:
        reference = (path.parent / layout.template.reference).resolve()
        if not reference.is_file():
            raise LayoutError(f"layout {path.name}: reference image {layout.template.reference} is missing")
        template = layout.template.model_copy(update={"reference": str(reference)})
        layout = layout.model_copy(update={"template": template})
    return layout


def load_layouts(directory: Path | None = None, extra: Sequence[Path] | None = None) -> LayoutRegistry:
    """Every *.yaml in the folder (default: the shipped layouts) and in the folders of onboarded
    devices (default: EYEOPS_LAYOUT_DIRS). A file whose kind differs from its name, or a kind
    defined twice, is an error."""
    folders = [directory or default_layout_dir(), *(extra_layout_dirs() if extra is None else extra)]
    layouts: dict[str, DeviceLayout] = {}
    for folder in folders:
        if folder != folders[0] and not folder.is_dir():
            raise LayoutError(f"layout folder {folder} does not exist (check {LAYOUT_DIRS_ENV})")
        for path in sorted(folder.glob("*.yaml")):
            layout = load_layout_file(path)
            if layout.kind in layouts:
                raise LayoutError(f"device kind {layout.kind!r} is defined twice ({path})")
            layouts[layout.kind] = layout
    if not layouts:
        raise LayoutError(f"no layouts in {folders[0]}")
    return LayoutRegistry(layouts)
