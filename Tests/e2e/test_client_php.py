"""The PHP client package (clients/php) against the real server: its own test script (clients/php/tests/run.php),
run with `php` against a dev-mode server with an admin token, a token-mode server with --token-secret (HS256) and a
token-mode server with --token-key (RS256, a key pair made for the test)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ADMIN_TOKEN, REPO, TASKGATE_BIN, new_uid, require_flags

PACKAGE = REPO / "clients" / "php"
RUN_TESTS = PACKAGE / "tests" / "run.php"
PHP_TIMEOUT = 180.0          # the whole PHP script; each of its requests has its own, shorter timeout
TOKEN_SECRET = "php-client-test-secret-0123456789"
RS256_ISSUER = "https://app.example.test"
RS256_AUDIENCE = "taskgate-php-test"
KEY_NAME = "php-client-key"  # the public key is KEY_NAME.pem, so its kid is KEY_NAME


def _php_problem() -> str | None:
    """Why the PHP tests cannot run here, or None."""
    try:
        p = subprocess.run(["php", "-r", 'echo extension_loaded("curl") ? "curl" : "no-curl";'],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"php-cli is not installed ({e}); scripts/install-test-deps.sh installs it"
    if p.stdout.strip() != "curl":
        return "php has no curl extension (php-curl); scripts/install-test-deps.sh installs it"
    return None


_PROBLEM = _php_problem()
if _PROBLEM and not os.environ.get("TASKGATE_REQUIRE_PHP"):
    pytestmark = pytest.mark.skip(reason=_PROBLEM)


@pytest.fixture(autouse=True)
def _php_required():
    if _PROBLEM:  # only reached with TASKGATE_REQUIRE_PHP set
        pytest.fail(f"TASKGATE_REQUIRE_PHP is set but {_PROBLEM}")


def run_php_tests(groups: list[str], env: dict[str, str]) -> str:
    """Runs clients/php/tests/run.php for the groups; asserts it passed and every case of them reported ok."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.upper().endswith("_PROXY") and not k.startswith("TASKGATE_")}
    full_env["NO_PROXY"] = full_env["no_proxy"] = "127.0.0.1,localhost"  # loopback only, never through a proxy
    full_env.update(env)
    try:
        p = subprocess.run(["php", str(RUN_TESTS), *groups], cwd=PACKAGE, env=full_env, capture_output=True,
                           text=True, timeout=PHP_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the PHP tests did not finish within {PHP_TIMEOUT}s; output so far:\n{e.stdout}")
    output = p.stdout + (f"\n--- stderr ---\n{p.stderr}" if p.stderr.strip() else "")
    print(output)  # shown by pytest -s or on failure
    plan = re.search(r"^1\.\.(\d+)$", p.stdout, re.M)
    assert plan, f"no test plan in the output:\n{output}"
    results = re.findall(r"^(ok|not ok) \d+ - ([\w-]+): (.*?)(?: \(\d+\.\d+ s\))?$", p.stdout, re.M)
    assert len(results) == int(plan.group(1)), f"{plan.group(1)} cases planned, {len(results)} reported:\n{output}"
    failed = [name for verdict, _, name in results if verdict != "ok"]
    skipped = [line for line in p.stdout.splitlines() if "# SKIP" in line]
    assert p.returncode == 0 and not failed, f"PHP tests failed (exit {p.returncode}): {failed}\n{output}"
    assert not skipped, "cases were skipped:\n" + "\n".join(skipped)
    assert {group for _, group, _ in results} == set(groups), output
    assert re.search(rf"^{len(results)} passed, 0 failed, 0 skipped$", p.stdout, re.M), output
    return p.stdout


def assert_cases(output: str, *names: str) -> None:
    for name in names:
        assert re.search(rf"^ok \d+ - [\w-]+: .*{re.escape(name)}", output, re.M), f"no passing case '{name}':\n{output}"


@pytest.fixture
def rsa_keys(tmp_path) -> tuple[Path, Path]:
    """A fresh RSA key pair: (public PEM, private PEM), made by the package's own key script (PHP's openssl)."""
    p = subprocess.run(["php", str(PACKAGE / "tests" / "make-rsa-keys.php"), str(tmp_path), KEY_NAME],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    public, private = (Path(line) for line in p.stdout.split())
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----"), public.read_text()[:80]
    assert "PRIVATE KEY-----" in private.read_text()
    return public, private


# --------------------------------------------------------------------------- the tests


def test_php_client_admin_api(start_server):
    """Submit (202, idempotent 200), status, list with filters, cancel, wait (result, timeout, a done before the
    wait, the cursor race), 404/400/401 as TaskGateException, transport failures: against a dev-mode server with an
    admin token (its own, so that its long sleeps and lists concern no other test)."""
    srv = start_server("--admin-token", ADMIN_TOKEN)
    out = run_php_tests(["admin"], {"TASKGATE_URL": srv.base_url, "TASKGATE_ADMIN_TOKEN": ADMIN_TOKEN})
    assert_cases(out, "submit answers 202", "resubmitting the same id", "task() reads the status",
                 "tasks() lists newest first", "cancel() stops a long sleep", "wait() returns the finished task",
                 "wait() past its timeout throws", "does not miss a done", "unknown task id raises TaskGateException 404",
                 "wrong or missing admin token raises 401", "refused connection raises TransportException")


def test_php_client_wait_past_the_poll_limit(start_server):
    """wait() for a uid whose only long-poll slot is taken (429) still returns the finished task."""
    srv = start_server("--admin-token", ADMIN_TOKEN, "--task-workers", "1", "--max-polls-per-uid", "1",
                       "--store", "memory")
    out = run_php_tests(["limits"], {"TASKGATE_LIMITED_URL": srv.base_url, "TASKGATE_ADMIN_TOKEN": ADMIN_TOKEN})
    assert_cases(out, "maximum of polls waiting")


def test_php_client_hs256_tokens(start_server):
    """Tokens minted by TokenMinter::hs256 are accepted by a --token-secret server, expired or forged ones refused;
    the admin client waits (long-polls as the uid) in token mode; the form matches `taskgate token`."""
    srv = start_server("--auth", "token", "--token-secret", TOKEN_SECRET, "--admin-token", ADMIN_TOKEN,
                       "--store", "memory")
    cli_uid = new_uid("cli")
    cli = subprocess.run([str(TASKGATE_BIN), "token", cli_uid, "--secret", TOKEN_SECRET, "--ttl", "600"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert cli.returncode == 0, cli.stderr
    out = run_php_tests(["hs256"], {
        "TASKGATE_TOKEN_URL": srv.base_url, "TASKGATE_TOKEN_SECRET": TOKEN_SECRET,
        "TASKGATE_TOKEN_ADMIN_TOKEN": ADMIN_TOKEN, "TASKGATE_CLI_TOKEN": cli.stdout.strip(),
    })
    assert_cases(out, "HS256 token is accepted", "expired token is refused", "another secret is refused",
                 "waited for by the admin client", "`taskgate token` mints")


def test_php_client_hs512_tokens(start_server):
    """TokenMinter::hmac(..., 'HS512') for a server with --token-algorithm HS512 (and its HS256 twin refused)."""
    require_flags("--token-algorithm")
    secret = "php-client-hs512-secret-" + "0123456789abcdef" * 3  # HS512 wants at least 64 bytes
    srv = start_server("--auth", "token", "--token-algorithm", "HS512", "--token-secret", secret, "--store", "memory")
    out = run_php_tests(["hs512"], {"TASKGATE_HS512_URL": srv.base_url, "TASKGATE_HS512_SECRET": secret})
    assert_cases(out, "HS512 token is accepted")


def test_php_client_rs256_signature_local(rsa_keys):
    """TokenMinter::rs256 tokens verify with the public key (openssl_verify); no server needed."""
    public, private = rsa_keys
    out = run_php_tests(["rs256-local"], {"TASKGATE_RSA_PUBLIC_KEY": str(public),
                                          "TASKGATE_RSA_PRIVATE_KEY": str(private)})
    assert_cases(out, "verifies with the public key")


def test_php_rs256_token_verifies_in_python(rsa_keys):
    """An independent check of the RS256 signature and encoding, with Python's `cryptography` (when installed)."""
    crypto = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    public, private = rsa_keys
    script = ("require $argv[1]; echo TaskGate\\TokenMinter::rs256($argv[2], keyId: 'k-1', issuer: 'i', "
              "audience: 'a')->mint('alice@example.com', 120);")
    p = subprocess.run(["php", "-r", script, str(PACKAGE / "autoload.php"), str(private)],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    token = p.stdout.strip()
    head, body, sig = token.split(".")

    def unb64(part: str) -> bytes:
        assert "=" not in part
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    key = crypto.load_pem_public_key(public.read_bytes())
    key.verify(unb64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())  # raises if wrong
    assert json.loads(unb64(head)) == {"alg": "RS256", "typ": "JWT", "kid": "k-1"}
    claims = json.loads(unb64(body))
    assert claims["sub"] == "alice@example.com" and claims["iss"] == "i" and claims["aud"] == "a"
    assert claims["exp"] - claims["iat"] == 120


def test_php_client_rs256_server(start_server, rsa_keys):
    """Tokens minted by TokenMinter::rs256 are accepted by a --token-key server (kid = the PEM file's base name, or
    no kid with one key), with --token-issuer/--token-audience checked; expired, foreign-key, unknown-kid and
    HS256-with-the-public-key tokens are refused."""
    require_flags("--token-key", "--token-issuer", "--token-audience")
    public, private = rsa_keys
    srv = start_server("--auth", "token", "--token-key", str(public), "--token-issuer", RS256_ISSUER,
                       "--token-audience", RS256_AUDIENCE, "--store", "memory")
    out = run_php_tests(["rs256"], {
        "TASKGATE_RS256_URL": srv.base_url, "TASKGATE_RSA_PUBLIC_KEY": str(public),
        "TASKGATE_RSA_PRIVATE_KEY": str(private), "TASKGATE_RS256_ISSUER": RS256_ISSUER,
        "TASKGATE_RS256_AUDIENCE": RS256_AUDIENCE,
    })
    assert_cases(out, "RS256 token is accepted", "without kid", "expired RS256 token is refused",
                 "issuer or audience", "another key")
