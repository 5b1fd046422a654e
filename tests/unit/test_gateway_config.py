from __future__ import annotations

import pydantic
import pytest

from eyeops.gateway.config import load_gateway_config


def test_flags_beat_environment_beat_file(tmp_path):
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(
        "watch_dir: /exports/iol\ndevice_kind: optical_biometer\ndevice_id: iol-01\n"
        "endpoint: http://file\nconcurrency: 2\nfilename_pattern: '^(?P<patient_id>P\\d{7})'\n"
    )
    env = {"EYEOPS_GATEWAY_ENDPOINT": "http://env", "EYEOPS_GATEWAY_CONCURRENCY": "3", "OTHER": "x"}
    config = load_gateway_config(config_file, {"concurrency": 5, "endpoint": None}, env)
    assert (config.endpoint, config.concurrency, config.device_id) == ("http://env", 5, "iol-01")
    assert config.name_pattern() is not None and config.outbox_path().name == "outbox.db"


def test_typos_and_bad_values_are_rejected(tmp_path):
    base = {"watch_dir": "/x", "device_kind": "k", "device_id": "d-1", "endpoint": "http://x"}
    with pytest.raises(pydantic.ValidationError, match="concurency"):
        load_gateway_config(None, {**base, "concurency": 2}, {})
    with pytest.raises(pydantic.ValidationError):
        load_gateway_config(None, {**base, "concurrency": 0}, {})
    with pytest.raises(Exception, match="not allowed"):
        load_gateway_config(None, {**base, "device_id": "../../etc"}, {})
