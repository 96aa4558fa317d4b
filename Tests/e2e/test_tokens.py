"""User tokens signed the way backends sign them (PyJWT): RS256 and ES256 keys from PEM and JWKS files, `kid`
rotation on reload, `iss`/`aud`, and algorithms that do not match their key refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import time
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from conftest import TASKGATE_BIN, new_uid, wait_until

NO_PROXY = {"http": None, "https": None}


def public_pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_pem(private_key) -> bytes:
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def claims(uid: str, **extra) -> dict:
    now = int(time.time())
    return {"sub": uid, "iat": now, "exp": now + 300, **extra}


def poll_status(server, token: str) -> tuple[int, dict]:
    """`POST /poll` with a ping: the cheapest request a user token admits."""
    r = requests.post(f"{server.base_url}/poll", headers={"Authorization": f"Bearer {token}"}, json={"cmd": "ping"},
                      timeout=5, proxies=NO_PROXY)
    return r.status_code, r.json()


@pytest.fixture
def keys(tmp_path: Path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "backend.pem").write_bytes(public_pem(rsa_key))
    (tmp_path / "edge.pem").write_bytes(public_pem(ec_key))
    return {"rsa": rsa_key, "ec": ec_key, "dir": tmp_path}


def test_rs256_and_es256_tokens_from_pyjwt(start_server, keys):
    server = start_server("--auth", "token", "--store", "memory", "--token-key", str(keys["dir"] / "backend.pem"),
                          "--token-key", str(keys["dir"] / "edge.pem"))
    uid = new_uid("rs")
    token = jwt.encode(claims(uid), keys["rsa"], algorithm="RS256", headers={"kid": "backend"})
    status, body = poll_status(server, token)
    assert status == 200 and body["type"] == "pong"

    es = jwt.encode(claims(uid), keys["ec"], algorithm="ES256", headers={"kid": "edge"})
    assert poll_status(server, es)[0] == 200

    # Each key verifies only its own algorithm: an RS256 token naming the EC key, PS256 on an RS256 key.
    crossed = jwt.encode(claims(uid), keys["rsa"], algorithm="RS256", headers={"kid": "edge"})
    status, body = poll_status(server, crossed)
    assert status == 401 and "its key is for ES256" in body["info"]
    pss = jwt.encode(claims(uid), keys["rsa"], algorithm="PS256", headers={"kid": "backend"})
    assert poll_status(server, pss)[0] == 401

    # `alg: none`, and the classic confusion: HS256 with the server's public key as the secret.
    def b64(data: dict) -> bytes:
        return jwt.utils.base64url_encode(json.dumps(data).encode())
    payload = b64(claims(uid))
    none = b64({"alg": "none", "typ": "JWT", "kid": "backend"}) + b"." + payload + b"."
    status, body = poll_status(server, none.decode())
    assert status == 401 and "'none'" in body["info"]
    header = b64({"alg": "HS256", "typ": "JWT", "kid": "backend"})
    signature = jwt.utils.base64url_encode(hmac.new(public_pem(keys["rsa"]), header + b"." + payload, hashlib.sha256).digest())
    status, body = poll_status(server, (header + b"." + payload + b"." + signature).decode())
    assert status == 401 and "its key is for RS256" in body["info"]

    # Two keys: a token must say which.
    unnamed = jwt.encode(claims(uid), keys["rsa"], algorithm="RS256")
    status, body = poll_status(server, unnamed)
    assert status == 401 and "kid" in body["info"]


def test_issuer_audience_and_the_cli_signing_with_a_private_key(start_server, keys):
    server = start_server("--auth", "token", "--store", "memory", "--token-key", str(keys["dir"] / "backend.pem"),
                          "--token-issuer", "https://backend.example", "--token-audience", "taskgate")
    uid = new_uid("iss")
    good = jwt.encode(claims(uid, iss="https://backend.example", aud=["taskgate", "other"]), keys["rsa"], algorithm="RS256")
    assert poll_status(server, good)[0] == 200
    for bad in (claims(uid, aud="taskgate"), claims(uid, iss="https://evil.example", aud="taskgate"),
                claims(uid, iss="https://backend.example", aud="someone-else")):
        status, body = poll_status(server, jwt.encode(bad, keys["rsa"], algorithm="RS256"))
        assert status == 401, body

    private = keys["dir"] / "backend-private.pem"
    private.write_bytes(private_pem(keys["rsa"]))
    minted = subprocess.run([str(TASKGATE_BIN), "token", uid, "--private-key", str(private), "--issuer", "https://backend.example",
                             "--audience", "taskgate", "--ttl", "60"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    assert jwt.get_unverified_header(minted)["alg"] == "RS256"
    assert poll_status(server, minted)[0] == 200


def test_jwks_keys_rotate_on_sighup(start_server, tmp_path):
    first = ec.generate_private_key(ec.SECP256R1())
    second = ec.generate_private_key(ec.SECP256R1())
    jwks_path = tmp_path / "jwks.json"

    def write_jwks(*entries):
        keys = []
        for kid, key in entries:
            jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "ES256"})
        jwks_path.write_text(json.dumps({"keys": keys}))

    write_jwks(("2026-11", first))
    server = start_server("--auth", "token", "--store", "memory", "--token-key", str(jwks_path))
    uid = new_uid("jwks")
    old = jwt.encode(claims(uid), first, algorithm="ES256", headers={"kid": "2026-11"})
    new = jwt.encode(claims(uid), second, algorithm="ES256", headers={"kid": "2026-12"})
    assert poll_status(server, old)[0] == 200
    assert poll_status(server, new)[0] == 401

    # Rotation: the new key is published, then the old one retired; each file is read again on SIGHUP.
    write_jwks(("2026-11", first), ("2026-12", second))
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: poll_status(server, new)[0] == 200, timeout=10, what="the new key after SIGHUP")
    assert poll_status(server, old)[0] == 200
    write_jwks(("2026-12", second))
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: poll_status(server, old)[0] == 401, timeout=10, what="the old key retired after SIGHUP")
    assert poll_status(server, new)[0] == 200


def test_eddsa_and_rsa_jwks(start_server, tmp_path):
    ed = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "ed.pem").write_bytes(public_pem(ed))
    rsa_jwk = {**json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "r1", "alg": "PS256"}
    (tmp_path / "rsa.json").write_text(json.dumps({"keys": [rsa_jwk]}))
    server = start_server("--auth", "token", "--store", "memory", "--token-key", str(tmp_path / "ed.pem"),
                          "--token-key", str(tmp_path / "rsa.json"))
    uid = new_uid("ed")
    assert poll_status(server, jwt.encode(claims(uid), ed, algorithm="EdDSA", headers={"kid": "ed"}))[0] == 200
    assert poll_status(server, jwt.encode(claims(uid), rsa_key, algorithm="PS256", headers={"kid": "r1"}))[0] == 200
    assert poll_status(server, jwt.encode(claims(uid), rsa_key, algorithm="RS256", headers={"kid": "r1"}))[0] == 401


@pytest.mark.parametrize("args, message", [
    (["--token-key", "/nonexistent/key.pem"], "cannot read"),
    (["--token-secret", "too-short"], "at least 32 bytes"),
    (["--token-secret", "x" * 40, "--token-algorithm", "HS512"], "at least 64 bytes"),
    (["--token-algorithm", "RS256", "--token-secret", "x" * 40], "HS256, HS384 or HS512"),
])
def test_unusable_token_settings_stop_the_start_with_a_reason(tmp_path, args, message):
    result = subprocess.run([str(TASKGATE_BIN), "serve", "--auth", "token", "--port", "0", "--store", "memory", *args],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
