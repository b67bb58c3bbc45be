"""Running one uvicorn server in this process (stopped at once during start-up), and waiting for a server to accept
connections or to have its model loaded."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

import uvicorn

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05
READY_POLL_SECONDS = 0.2  # each poll is a request the loading worker answers: not too often


def run_server(config: uvicorn.Config, sockets: list[socket.socket] | None = None,
               on_listening: Callable[[], None] | None = None) -> None:
    """`uvicorn.Server(config).run(sockets)`, except that SIGTERM or SIGINT before the server listens (while the
    lifespan loads the model) ends the process at once instead of after the load, and `on_listening` is called
    from a thread once the server accepts connections."""
    server = uvicorn.Server(config)
    graceful = server.handle_exit

    def handle_exit(sig: int, frame) -> None:
        if server.started and sig == signal.SIGINT:
            # Ctrl-C: the same graceful stop, but not recorded for uvicorn to raise again once stopped: raised, it
            # becomes a KeyboardInterrupt that skips the event loop's clean-up, and the interpreter then waits up
            # to 10 s for the idle worker threads of the requests served; and the command exits 0, not 130.
            server.force_exit = server.should_exit  # a second Ctrl-C: stop without waiting for connections
            server.should_exit = interrupted["by_ctrl_c"] = True
            return
        if server.started:
            graceful(sig, frame)
            return
        log.warning("stopped by signal %d during start-up", sig)
        signal.signal(sig, signal.SIG_DFL)  # nothing to finish yet: die of the signal, as a process without handlers
        os.kill(os.getpid(), sig)

    interrupted = {"by_ctrl_c": False}
    server.handle_exit = handle_exit  # uvicorn installs it as the signal handler when it starts serving
    if on_listening is not None:
        threading.Thread(target=_when_started, args=(server, on_listening), name="hmrec-announce", daemon=True).start()
    server.run(sockets=sockets)
    if interrupted["by_ctrl_c"]:
        # Stopped cleanly (requests finished, lifespan closed). A normal interpreter exit would then wait for
        # anyio's idle worker threads, which are not daemons and linger up to 10 s after their last request.
        exit_now(0)


def exit_now(code: int) -> NoReturn:
    """End the process once a server has stopped cleanly: logs and output flushed, no wait for lingering threads or
    the interpreter's clean-up of its modules (1-2 s for a supervisor that imported MLflow)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _when_started(server: uvicorn.Server, callback: Callable[[], None]) -> None:
    pause = threading.Event()
    while not server.started:
        if server.should_exit:
            return
        pause.wait(POLL_SECONDS)
    callback()


def wait_until_accepting(host: str, port: int, stopped: Callable[[], bool]) -> bool:
    """Wait until a TCP connection to (host, port) succeeds (True) or `stopped()` (False): for worker processes,
    whose servers run in other processes."""
    pause = threading.Event()
    while not stopped():
        try:
            with socket.create_connection((_reachable(host), port), timeout=1):
                return True
        except OSError:
            pause.wait(POLL_SECONDS)
    return False


def wait_until_ready(host: str, port: int, stopped: Callable[[], bool]) -> bool:
    """Wait until GET /ready on (host, port) answers 200, a model loaded (True), or `stopped()` (False). The port
    opens before the model has loaded, so a connection alone says nothing of it."""
    pause = threading.Event()
    while not stopped():
        connection = http.client.HTTPConnection(_reachable(host), port, timeout=5)
        try:
            connection.request("GET", "/ready")
            if connection.getresponse().status == 200:
                return True
        except (OSError, http.client.HTTPException):
            pass  # not listening yet, or a worker stopping
        finally:
            connection.close()
        pause.wait(READY_POLL_SECONDS)
    return False


def _reachable(host: str) -> str:
    """The address to connect to for a server listening on `host` (every interface: this machine's loopback)."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
