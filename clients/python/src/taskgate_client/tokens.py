"""User tokens for TaskGate's token mode (`taskgate serve --auth token`).

A user token is a JWT whose `sub` is the uid and `exp` its expiry. HS256 tokens are signed with the secret the server
has (`--token-secret`), with the standard library only; RS256 tokens with a private key whose public key the server
has (`--token-key`), which needs the `cryptography` package (`pip install 'taskgate-client[rs256]'`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any, Dict, Optional, Sequence, Union

__all__ = ["mint_token"]

_UID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MIN_SECRET_BYTES = 32
"""The server refuses shorter HS256 `--token-secret`s (RFC 7518 §3.2)."""
MIN_RSA_BITS = 2048


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact(obj: Dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def mint_token(
    uid: str,
    ttl: int = 3600,
    *,
    secret: Union[str, bytes, None] = None,
    private_key_pem: Union[str, bytes, None] = None,
    algorithm: Optional[str] = None,
    kid: Optional[str] = None,
    issuer: Optional[str] = None,
    audience: Union[str, Sequence[str], None] = None,
    now: Optional[float] = None,
    private_key_password: Union[str, bytes, None] = None,
) -> str:
    """A signed user token for `uid`, valid for `ttl` seconds.

    Pass exactly one of `secret` (HS256, the server's `--token-secret`) and `private_key_pem` (RS256, a PEM RSA
    private key whose public key the server was given with `--token-key`). `algorithm` ("HS256" or "RS256") defaults
    to the one the key implies. `kid` goes into the header (the server names a PEM key by its file's base name);
    `issuer` and `audience` become the `iss` and `aud` claims (checked by a server started with `--token-issuer` /
    `--token-audience`). `now` (Unix seconds) overrides the issue time, e.g. for a clock known to be off.
    `private_key_password` decrypts an encrypted PEM key.

    Claims: `sub`, `exp` (= iat + ttl), `iat`, and `iss`/`aud` when given.
    """
    if not isinstance(uid, str) or not _UID.match(uid):
        raise ValueError("uid must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError("ttl must be a positive whole number of seconds")
    if (secret is None) == (private_key_pem is None):
        raise ValueError("pass exactly one of secret (HS256) and private_key_pem (RS256)")
    implied = "HS256" if secret is not None else "RS256"
    alg = implied if algorithm is None else str(algorithm).upper()
    if alg not in ("HS256", "RS256"):
        raise ValueError(f"algorithm must be HS256 or RS256, not {algorithm!r}")
    if alg != implied:
        raise ValueError(f"{alg} needs {'secret' if alg == 'HS256' else 'private_key_pem'}")

    if kid is not None and (not isinstance(kid, str) or not kid or _CONTROL.search(kid)):
        raise ValueError("kid must be a non-empty string without control characters")
    if issuer is not None and (not isinstance(issuer, str) or not issuer):
        raise ValueError("issuer must be a non-empty string (None for none)")
    if audience is not None:
        many = [audience] if isinstance(audience, str) else list(audience)
        if not many or not all(isinstance(a, str) and a for a in many):
            raise ValueError("audience must be a non-empty string or a non-empty list of them")

    issued = int(time.time() if now is None else now)
    header: Dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    claims: Dict[str, Any] = {"sub": uid, "exp": issued + ttl, "iat": issued}
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience if isinstance(audience, str) else list(audience)

    signing_input = f"{_b64url(_compact(header))}.{_b64url(_compact(claims))}".encode("ascii")
    if alg == "HS256":
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if not isinstance(key, bytes) or len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"secret must have at least {MIN_SECRET_BYTES} bytes (as the server's --token-secret)")
        signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    else:
        assert private_key_pem is not None
        signature = _rs256_sign(private_key_pem, private_key_password, signing_input)
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


def _rs256_sign(private_key_pem: Union[str, bytes], password: Union[str, bytes, None], data: bytes) -> bytes:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError("RS256 tokens need the cryptography package: pip install 'taskgate-client[rs256]'") from e
    pem = private_key_pem.encode("ascii") if isinstance(private_key_pem, str) else private_key_pem
    secret = password.encode("utf-8") if isinstance(password, str) else password
    try:
        key = serialization.load_pem_private_key(pem, password=secret)
    except (ValueError, TypeError) as e:
        raise ValueError(f"private_key_pem is not a usable PEM private key: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("RS256 needs an RSA private key")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"the RSA key must have at least {MIN_RSA_BITS} bits")
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
