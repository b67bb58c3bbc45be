"""A real, throw-away PostgreSQL server for tests and benchmarks: Debian's binaries, a temporary cluster, a free
loopback port.

initdb and postgres refuse to run as root, so when the tests run as root the cluster belongs to an unprivileged
user (`postgres` if the package created it, else `nobody`) and every server command runs through `runuser`."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from hmrec.support.launcher import free_port

USER = "hmrec"  # the cluster's superuser (trust authentication on loopback only)


def server_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding postgres, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def _owner() -> str | None:
    """The unprivileged user the cluster runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither `postgres` nor `nobody` exists: create an unprivileged user")


class TemporaryPostgres:
    """initdb + postgres in a temporary folder on 127.0.0.1:<free port>; `url(db)` after `create_database(db)`."""

    def __init__(self, fsync: bool = False):
        self.bin = server_bin()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql/*/bin: run `make test` (it installs "
                               "Debian's postgresql package) or `apt-get install postgresql`")
        self.owner = _owner()
        self.root = Path(tempfile.mkdtemp(prefix="hmrec-pg-"))  # in /tmp: readable by the owner, unlike tmp_path
        self.port = free_port()
        self.fsync = fsync
        self.process: subprocess.Popen | None = None

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.owner, "--", *args] if self.owner else list(args)

    def start(self, timeout: float = 60) -> TemporaryPostgres:
        """initdb (the first time) and start the server; after `halt`, the same cluster starts again."""
        if self.owner:
            shutil.chown(self.root, self.owner)
        data = self.root / "data"
        if not data.exists():
            subprocess.run(self._command(str(self.bin / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
                                         "--no-sync", "-E", "UTF8", "--locale=C"), check=True, capture_output=True)
        # fsync off unless asked: the tests kill `hmrec serve`, never the database, so its disk flushes buy nothing
        self.log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            self._command(str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
                          "-k", str(self.root), "-c", f"fsync={'on' if self.fsync else 'off'}",
                          "-c", "max_connections=200"),
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: "
                                   f"{(self.root / 'server.log').read_text()}")
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres was not ready within {timeout} s: {(self.root / 'server.log').read_text()}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def halt(self) -> None:
        """Stop the server, keeping its data: `start` runs it again (a database outage). SIGINT: postgres's "fast"
        shutdown, which ends the clients' sessions instead of waiting for them to leave."""
        postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])  # runuser passes SIGTERM only
        os.kill(postmaster, signal.SIGINT)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: postgres's "smart" shutdown; the runuser wrapper passes it on
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
