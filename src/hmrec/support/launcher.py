"""A real `hmrec serve` subprocess on a free localhost port, started and stopped from Python (tests, bench)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from hmrec.serving.events import sqlite_path

HMREC = Path(sys.executable).parent / "hmrec"


def files_of_at_most(limit: int) -> Callable[[], None]:
    """A child's `preexec_fn` that fills its disk early: a write past `limit` bytes of any file fails with EFBIG
    (SIGXFSZ ignored, so the write fails instead of killing the process)."""

    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real `hmrec serve` subprocess on a free localhost port."""

    def __init__(self, workdir: Path, events_db: Path | str, log_path: Path, *, events_token: str | None = None,
                 demo: bool = False, preexec_fn: Callable[[], None] | None = None, **env: str):
        """`events_db`: a SQLite file, or a postgresql:// URL (HMREC_EVENTS_URL); `events_token`: HMREC_EVENTS_TOKEN,
        sent by `events_headers`; `demo`: `hmrec serve --demo` (anonymous events); `preexec_fn`: run in the child
        before it starts (e.g. a resource limit); env: extra environment, e.g. HMREC_WORKERS="2", HMREC_ADMIN_TOKEN
        or MLFLOW_TRACKING_URI (default: the workdir's own registry)."""
        self.workdir, self.events_db, self.log_path = workdir, events_db, log_path
        self.demo, self.preexec_fn = demo, preexec_fn
        self.events_headers = {"Authorization": f"Bearer {events_token}"} if events_token else {}
        if events_token:
            env = {"HMREC_EVENTS_TOKEN": events_token, **env}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        store = {"HMREC_EVENTS_PATH": str(events_db)} if sqlite_path(events_db) is not None \
            else {"HMREC_EVENTS_URL": str(events_db)}
        self.env = {**os.environ, **store, **env}
        if "MLFLOW_TRACKING_URI" not in env:
            self.env.pop("MLFLOW_TRACKING_URI", None)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Server:
        """Start the service and wait until every worker answers /ready with 200 (its model loaded)."""
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> Server:
        """Start `hmrec serve` without waiting for anything."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(HMREC), "serve", "--workdir", str(self.workdir), "--port", str(self.port)] + ["--demo"] * self.demo,
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True, preexec_fn=self.preexec_fn,
        )
        return self

    def wait_ready(self, timeout: float = 90) -> Server:
        """Until every worker answers /ready with 200: the port opens before the model has loaded, so an open port
        (or one 200, with several workers) does not mean the service answers."""
        workers = int(self.env.get("HMREC_WORKERS", "1"))
        return self._wait(lambda: len(self.ready_processes()) >= workers, timeout, "ready")

    def wait_listening(self, timeout: float = 90) -> Server:
        """Until the port accepts connections (the model may still be loading)."""
        return self._wait(self._listening, timeout, "listening")

    def wait_logged(self, text: str, timeout: float = 30) -> str:
        """Until the server's log holds `text` (a line its supervisor writes from another thread may follow the
        state the test saw); returns the log."""
        self._wait(lambda: text in self.log_path.read_text(), timeout, f"logging {text!r}")
        return self.log_path.read_text()

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                return True
        except OSError:
            return False

    def _wait(self, done, timeout: float, what: str) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hmrec serve exited with {self.process.returncode}: {self.log_path.read_text()}")
            if done():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"hmrec serve was not {what} within {timeout} s: {self.log_path.read_text()}")

    def ready_processes(self, tries: int = 20) -> set[str]:
        """Tokens of the worker processes seen ready (/ready's `worker`), each request on a new connection (the kernel
        hands them to the workers)."""
        seen = set()
        for _ in range(tries):
            try:
                response = httpx.get(f"{self.url}/ready", timeout=2)
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                seen.add(response.json()["worker"])
        return seen

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
