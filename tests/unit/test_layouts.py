import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from eyeops.devices import load_layouts
from eyeops.devices.layout import default_layout_dir
from eyeops.errors import LayoutError, UnknownDeviceKind
from eyeops.fields import check_holds
from eyeops.synth.values import format_values, sample_values

KINDS = {
    "optical_biometer",
    "scheimpflug_tomographer",
    "anterior_segment_oct",
    "autorefractor",
    "specular_microscope",
    "noncontact_tonometer",
}


def test_six_device_kinds_with_header(layouts):
    assert set(layouts.kinds()) == KINDS
    for layout in layouts:
        assert [f.name for f in layout.header] == ["patient_id", "laterality", "exam_date"]
        assert layout.fields, layout.kind


def test_boxes_do_not_overlap(layouts):
    for layout in layouts:
        boxes = [f.box for f in layout.all_fields()]
        for i, (x, y, w, h) in enumerate(boxes):
            for x2, y2, w2, h2 in boxes[i + 1 :]:
                assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y, layout.kind


@pytest.mark.parametrize("mode", ["realistic", "random"])
def test_sampled_values_match_grammar_and_range(layouts, mode):
    rng = np.random.default_rng(0)
    for layout in layouts:
        for _ in range(200):
            values = sample_values(layout, rng, mode)
            texts = format_values(layout, values)
            for spec in layout.all_fields():
                assert re.fullmatch(spec.grammar, texts[spec.name]), (spec.name, texts[spec.name])
                v = values[spec.name]
                if spec.range and isinstance(v, float):
                    assert spec.range[0] <= v <= spec.range[1]


def test_realistic_values_satisfy_cross_checks(layouts):
    rng = np.random.default_rng(1)
    for layout in layouts:
        for _ in range(300):
            values = sample_values(layout, rng, "realistic")
            for check in layout.checks:
                nums = {n: values[n] for n in check.fields}
                assert check_holds(check, nums, layout), (layout.kind, check.describe(), nums)  # type: ignore[arg-type]


def test_adding_a_device_kind_is_adding_a_file(tmp_path: Path):
    for path in default_layout_dir().glob("*.yaml"):
        shutil.copy(path, tmp_path)
    text = (tmp_path / "noncontact_tonometer.yaml").read_text()
    (tmp_path / "rebound_tonometer.yaml").write_text(
        text.replace("kind: noncontact_tonometer", "kind: rebound_tonometer")
    )
    registry = load_layouts(tmp_path)
    assert "rebound_tonometer" in registry.kinds() and len(registry.kinds()) == 7


def test_inconsistent_layouts_are_refused(tmp_path: Path):
    text = (default_layout_dir() / "optical_biometer.yaml").read_text()
    (tmp_path / "optical_biometer.yaml").write_text(
        text.replace("fields: [k1_d, k2_d]", "fields: [k1_d, k9_d]")
    )
    with pytest.raises(LayoutError, match="unknown fields"):
        load_layouts(tmp_path)
    (tmp_path / "optical_biometer.yaml").write_text(text.replace("kind: optical_biometer", "kind: other"))
    with pytest.raises(LayoutError, match="declares kind"):
        load_layouts(tmp_path)


def test_unknown_kind_lists_known_kinds(layouts):
    with pytest.raises(UnknownDeviceKind) as info:
        layouts["fundus_camera"]
    assert info.value.status_code == 400
    assert "optical_biometer" in str(info.value)
