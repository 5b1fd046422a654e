from __future__ import annotations

from eyeops.monitoring.report import render_report


def test_report_has_a_table_and_a_plot_per_detector() -> None:
    history = [
        {"detector": "lens_features", "at": 1_790_000_000 + i * 60, "is_drift": i == 3,
         "p_values": {"wtw_mm": 0.5 / (1 + 100 * (i == 3)), "acd_mm": 0.4}, "rows": 200}
        for i in range(4)
    ] + [{"detector": "recommended_size", "at": 1_790_000_100, "is_drift": False,
          "p_values": {"recommended_size": 0.7}, "rows": 200}]  # fmt: skip
    page = render_report(history, {"outcomes": 12, "mae_um": 101.5, "coverage": 0.917})
    assert page.count("data:image/png;base64,") == 2
    assert "<td>lens_features</td><td>4</td><td>1</td><td>DRIFT</td><td>wtw_mm</td>" in page
    assert "rolling MAE: 101.5 µm" in page and "interval coverage: 0.917" in page
    assert "No detector has completed" in render_report([], {"outcomes": 0})
