from __future__ import annotations

import stat

import pytest

from eyeops.auth import TokenRegistry, Unauthorized, add_device, hash_token, read_token_file
from eyeops.errors import EyeopsError, InvalidRequest


def test_token_round_trip_keeps_only_the_hash(tmp_path):
    registry_file, token_file = tmp_path / "tokens.txt", tmp_path / "dev.token"
    add_device(registry_file, token_file, "biometer-01")
    token = read_token_file(token_file)
    assert token not in registry_file.read_text()
    assert hash_token(token) in registry_file.read_text()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    registry = TokenRegistry.from_file(registry_file)
    assert registry.authenticate(f"Bearer {token}") == "biometer-01"


def test_wrong_missing_and_malformed_tokens_are_unauthorized(tmp_path):
    registry = TokenRegistry({"dev-a": hash_token("secret-a"), "dev-b": hash_token("secret-b")})
    assert registry.authenticate("Bearer secret-b") == "dev-b"
    for header in (None, "", "Bearer ", "Basic c2VjcmV0LWE=", "Bearer secret-c", "secret-a"):
        with pytest.raises(Unauthorized) as err:
            registry.authenticate(header)
        assert err.value.status_code == 401


def test_registry_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "tokens.txt"
    bad.write_text("# comment\ndev-a sha256:" + "0" * 64 + "\ndev-b md5:abc\n")
    with pytest.raises(EyeopsError, match=r"tokens.txt:3"):
        TokenRegistry.from_file(bad)
    bad.write_text(f"dev-a {hash_token('x')}\ndev-a {hash_token('y')}\n")
    with pytest.raises(EyeopsError, match="twice"):
        TokenRegistry.from_file(bad)


def test_add_device_refuses_to_replace_and_checks_ids(tmp_path):
    add_device(tmp_path / "r.txt", tmp_path / "a.token", "dev-a")
    with pytest.raises(EyeopsError, match="already has"):
        add_device(tmp_path / "r.txt", tmp_path / "a2.token", "dev-a")
    with pytest.raises(InvalidRequest):
        add_device(tmp_path / "r.txt", tmp_path / "x.token", "../etc")
