"""JWTs of the cluster's identity provider beside the hashed client tokens (the lens transformer's
--jwks_file/--jwt_issuer/--jwt_audience): signature, issuer, audience and expiry all checked."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from eyeops.auth import Authenticator, JwtVerifier, TokenRegistry, Unauthorized, hash_token

ISSUER, AUDIENCE = "https://idp.clinic.example/realms/eyeops", "eyeops-lens"


def keypair(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    good, good_jwk = keypair("k1")
    other, other_jwk = keypair("k2")
    return {
        "good": good,
        "other": other,
        "jwks": {"keys": [good_jwk, other_jwk]},
        "stranger": keypair("k1")[0],
    }


def token(key: Any, kid: str = "k1", **claims: Any) -> str:
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "emr-frontend", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def test_a_valid_token_names_its_subject_and_every_flaw_is_401(keys: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keys["jwks"]))
    verifier = JwtVerifier.from_file(path, ISSUER, AUDIENCE)
    auth = Authenticator(TokenRegistry({"emr": hash_token("static-token")}, "client"), verifier)
    assert auth.authenticate("Bearer " + token(keys["good"])) == "jwt:emr-frontend"
    assert auth.authenticate("Bearer " + token(keys["other"], kid="k2")) == "jwt:emr-frontend"
    assert auth.authenticate("Bearer static-token") == "emr"  # the registry still answers
    flawed = {
        "another issuer": token(keys["good"], iss="https://evil.example"),
        "another audience": token(keys["good"], aud="eyeops-ocr"),
        "expired": token(keys["good"], exp=int(time.time()) - 3600),
        "unknown key id": token(keys["good"], kid="k9"),
        "signed by a stranger with a known kid": token(keys["stranger"]),
        "no subject": jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}, keys["good"], "RS256",
            headers={"kid": "k1"},
        ),
        "alg none": jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
                               None, algorithm="none"),
        "HS256 with the public key as secret": "a.b.c",
    }  # fmt: skip
    for why, bad in flawed.items():
        with pytest.raises(Unauthorized):
            auth.authenticate("Bearer " + bad)
            pytest.fail(why)


def test_an_unreadable_key_set_is_refused_at_start(tmp_path: Path) -> None:
    from eyeops.errors import EyeopsError

    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EyeopsError, match="JSON Web Key Set"):
        JwtVerifier.from_file(tmp_path / "bad.json", ISSUER, AUDIENCE)
    with pytest.raises(EyeopsError, match="JSON Web Key Set"):
        JwtVerifier({"keys": [{"kty": "nope"}]}, ISSUER, AUDIENCE)
