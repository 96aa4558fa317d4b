#!/usr/bin/env python3
"""A throwaway PostgreSQL server for the cluster tests and the cluster benchmark.

``PostgresServer`` initdb's a fresh cluster in a temporary folder, listens on 127.0.0.1 only (a free port, the
Unix socket inside that folder), runs without fsync (a test database is disposable), and offers:

* ``url`` / ``url_for(db)`` – ``postgres://taskgate:taskgate@127.0.0.1:PORT/DB`` (password auth, SCRAM),
* ``create_database()``     – a fresh, empty database per test (``CREATE DATABASE``), returns its URL,
* ``reset_database(name)``  – drop and recreate one (an empty schema again),
* ``drop_database(name)``, ``psql(sql)`` – administration as the superuser, over the Unix socket,
* ``stop()`` (fast shutdown), ``start()``, ``restart()``, ``cleanup()`` (stop and delete everything).

As root, the PostgreSQL programs run as the ``postgres`` OS user (PostgreSQL refuses to run as root), and the
folder is handed to that user. The binaries are found through ``$TASKGATE_PG_BINDIR``, ``pg_config --bindir``,
``/usr/lib/postgresql/*/bin`` or ``PATH``. Every call to a PostgreSQL program is bounded in time.

Run ``python3 Tests/e2e/pg.py`` to start one in the foreground for manual work: it prints the URL and stops on
Ctrl-C or SIGTERM. ``--url-file PATH`` also writes the URL there once the server is up (what a script that starts it
in the background waits for; scripts/test.sh does), and ``--exit-with-parent`` stops it when the process that started
it is gone. Needs nothing but the Python standard library.
"""

from __future__ import annotations

import argparse
import atexit
import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

COMMAND_TIMEOUT = 60.0   # initdb, pg_ctl, psql: each call is bounded
START_TIMEOUT = 30       # pg_ctl -w -t: seconds to wait for the server to accept connections
STOP_TIMEOUT = 30        # pg_ctl -w -t: seconds to wait for the server to go
SUPERUSER = "postgres"   # the cluster's superuser (initdb -U); used over the Unix socket only
DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def _version_key(path: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[./]", path) if p)


def _is_bindir(path: Path) -> bool:
    return all((path / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def find_bindir() -> Path | None:
    """The folder of initdb/pg_ctl/postgres, or None when PostgreSQL is not installed."""
    candidates: list[Path] = []
    if os.environ.get("TASKGATE_PG_BINDIR"):
        candidates.append(Path(os.environ["TASKGATE_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10,
                                 stdin=subprocess.DEVNULL).stdout.strip()
            if out:
                candidates.append(Path(out))
        except (OSError, subprocess.TimeoutExpired):
            pass
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    for candidate in candidates:
        if _is_bindir(candidate):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env() -> dict:
    """The environment without PG* variables (PGHOST, PGDATABASE, ... would redirect psql and friends)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", PGCONNECT_TIMEOUT="10")
    return env


_LIVE: list["PostgresServer"] = []


@atexit.register
def _cleanup_leftovers() -> None:  # an interrupted run must not leave a postmaster behind
    for server in list(_LIVE):
        try:
            server.cleanup()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class PostgresServer:
    def __init__(self, port: int | None = None, user: str = "taskgate", password: str = "taskgate",
                 auth: str = "scram-sha-256", database: str = "taskgate", bindir: Path | None = None,
                 parent_dir: str | None = None, max_connections: int = 300):
        self.bindir = Path(bindir) if bindir else find_bindir()
        if self.bindir is None:
            raise PostgresUnavailable("PostgreSQL server binaries not found (install Debian's `postgresql`, "
                                      "or set TASKGATE_PG_BINDIR)")
        psql = self.bindir / "psql"
        self.psql_bin = str(psql) if psql.is_file() else shutil.which("psql")
        if auth not in ("scram-sha-256", "md5", "password", "trust"):
            raise ValueError(f"unsupported auth method {auth!r}")
        if not DB_NAME.match(database) or not re.match(r"^[A-Za-z0-9_]{1,63}$", user):
            raise ValueError("database and user must be plain identifiers")
        self.user, self.password, self.auth, self.database = user, password, auth, database
        self.max_connections = max_connections
        self.port = port or free_port()
        self._fixed_port = port is not None
        # As root, the server runs as the `postgres` OS user; otherwise as whoever runs this.
        self.os_user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root, but there is no `postgres` OS user to run PostgreSQL as")
            self.os_user = "postgres"
        self.base = Path(tempfile.mkdtemp(prefix="taskgate-pg-", dir=parent_dir))
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.log_path = self.base / "postgres.log"
        self.socket_dir.mkdir()
        self.log_path.touch()
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            for path in (self.base, self.socket_dir, self.log_path):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._initialized = False
        self._databases: set[str] = set()
        _LIVE.append(self)

    # ------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url_for(self, database: str) -> str:
        return f"postgres://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        """The URL of the database created at the first start."""
        return self.url_for(self.database)

    # ------------------------------------------------------------------ running programs

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if self.os_user is None:
            return argv
        if shutil.which("runuser"):
            return ["runuser", "-u", self.os_user, "--", *argv]
        return ["su", "-s", "/bin/sh", self.os_user, "-c", shlex.join(argv)]

    def _run(self, argv: list[str], timeout: float = COMMAND_TIMEOUT, check: bool = True,
             as_server_user: bool = True) -> subprocess.CompletedProcess:
        cmd = self._as_server_user(argv) if as_server_user else argv
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.base,
                                  env=_clean_env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{shlex.join(argv)} did not finish within {timeout}s\n{self.log_tail()}") from e
        if check and proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}\n--- stdout ---\n{proc.stdout}"
                               f"\n--- stderr ---\n{proc.stderr}\n{self.log_tail()}")
        return proc

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return "--- postgres.log tail ---\n" + self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # ------------------------------------------------------------------ lifecycle

    def _write_settings(self) -> None:
        """taskgate.conf, included from postgresql.conf; rewritten on every start (the port may change once)."""
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": str(self.max_connections),
            "shared_buffers": "'64MB'",
            "fsync": "off",                      # a throwaway database: speed over durability
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "huge_pages": "off",
            "max_parallel_workers_per_gather": "0",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_min_duration_statement": "-1",
        }
        text = "".join(f"{key} = {value}\n" for key, value in settings.items())
        conf = self.base / "taskgate.conf"
        conf.write_text(text)
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            os.chown(conf, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust",
                   "-E", "UTF8", "--no-locale", "--no-sync"])
        # Admin work goes over the Unix socket (trust); TaskGate nodes connect over TCP with a password.
        (self.data_dir / "pg_hba.conf").write_text(f"local all all trust\n"
                                                   f"host all all 127.0.0.1/32 {self.auth}\n")
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write(f"\ninclude_if_exists = '{self.base / 'taskgate.conf'}'\n")
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            for name in ("pg_hba.conf", "postgresql.conf"):
                os.chown(self.data_dir / name, entry.pw_uid, entry.pw_gid)
        self._initialized = True

    def is_running(self) -> bool:
        if not self._initialized:
            return False
        return self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "status"], check=False,
                         timeout=15).returncode == 0

    def _pg_ctl_start(self) -> subprocess.CompletedProcess:
        self._write_settings()
        return self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                          "-w", "-t", str(START_TIMEOUT), "start"], check=False,
                         timeout=START_TIMEOUT + 15)

    def start(self) -> "PostgresServer":
        """Starts the server (initdb first if needed) and returns once it accepts connections."""
        first = not self._initialized
        if first:
            self._initdb()
        elif self.is_running():
            return self
        attempts = 3 if (first and not self._fixed_port) else 1
        for attempt in range(attempts):
            proc = self._pg_ctl_start()
            if proc.returncode == 0:
                break
            if attempt + 1 < attempts and "in use" in self.log_tail(2000):
                self.port = free_port()  # someone took the port in between: take another
                continue
            raise RuntimeError(f"pg_ctl start failed ({proc.returncode})\n{proc.stdout}\n{proc.stderr}\n"
                               f"{self.log_tail()}")
        self.wait_ready()
        if first:
            password = self.password.replace("'", "''")
            self.psql(f"CREATE ROLE {self.user} LOGIN CREATEDB PASSWORD '{password}'")
            self.create_database(self.database)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self._run([self.psql_bin, "-X", "-q", "-h", str(self.socket_dir), "-p", str(self.port),
                              "-U", SUPERUSER, "-d", "postgres", "-tAc", "SELECT 1"], check=False, timeout=15,
                             as_server_user=False)
            if proc.returncode == 0 and proc.stdout.strip() == "1":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready within {timeout}s: {proc.stderr}\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """Stops the server: `fast` (disconnect clients, clean shutdown) or `immediate` (like a crash)."""
        if not self.is_running():
            return
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w",
                   "-t", str(STOP_TIMEOUT), "stop"], timeout=STOP_TIMEOUT + 15)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        """Stops the server (immediate: its data is thrown away) and deletes the folder."""
        try:
            if self._initialized and self.data_dir.exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            if self in _LIVE:
                _LIVE.remove(self)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # ------------------------------------------------------------------ administration

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Runs SQL as the superuser over the Unix socket; returns the unaligned, tuples-only output."""
        proc = self._run([self.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
                          "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-tA", "-c", sql],
                         as_server_user=False)
        return proc.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database owned by the TaskGate role; returns its URL."""
        name = name or f"tg_{uuid.uuid4().hex[:16]}"
        if not DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self.psql(f"CREATE DATABASE {name} OWNER {self.user}")
        self._databases.add(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drops a database, disconnecting whoever is still connected to it."""
        if not DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._databases.discard(name)

    def reset_database(self, name: str) -> str:
        """Drops and recreates a database (an empty schema for the next run); returns its URL."""
        self.drop_database(name)
        return self.create_database(name)

    @staticmethod
    def database_of(url: str) -> str:
        return url.rsplit("/", 1)[1].split("?", 1)[0]


# ---------------------------------------------------------------------------- foreground mode


def main() -> int:
    parser = argparse.ArgumentParser(description="Start a throwaway PostgreSQL on 127.0.0.1 in the foreground "
                                                 "(stops and deletes it on Ctrl-C or SIGTERM).")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--database", default="taskgate")
    parser.add_argument("--auth", default="scram-sha-256", choices=["scram-sha-256", "md5", "trust"])
    parser.add_argument("--url-file", type=Path, default=None,
                        help="write the URL to this file once the server accepts connections")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one exits (a killed script leaves no server)")
    options = parser.parse_args()
    parent = os.getppid()
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, _frame: stopping.append(received))
    server = PostgresServer(port=options.port, database=options.database, auth=options.auth)
    try:
        server.start()
        print(f"PostgreSQL {server.bindir} listening on 127.0.0.1:{server.port}", flush=True)
        print(f"data folder: {server.base}", flush=True)
        print(f"superuser shell: {server.psql_bin} -h {server.socket_dir} -p {server.port} -U {SUPERUSER}",
              flush=True)
        print(server.url, flush=True)
        if options.url_file:
            # Written whole, then renamed: a reader never sees half a URL.
            partial = options.url_file.with_name(options.url_file.name + ".partial")
            partial.write_text(server.url + "\n")
            partial.replace(options.url_file)
        while not stopping and not (options.exit_with_parent and os.getppid() != parent):
            time.sleep(0.2)
        print(f"{signal.Signals(stopping[0]).name if stopping else 'parent exited'}: stopping", flush=True)
        server.stop("fast")
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
