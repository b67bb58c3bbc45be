"""Running one uvicorn server in this process: told once it accepts connections, stopped at once during start-up."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

import uvicorn

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05


def run_server(config: uvicorn.Config, sockets: list[socket.socket] | None = None,
               on_listening: Callable[[], None] | None = None) -> None:
    """`uvicorn.Server(config).run(sockets)`, except that SIGTERM or SIGINT before the server listens (while the
    lifespan loads the model) ends the process at once instead of after the load, and `on_listening` is called
    from a thread once the server accepts connections."""
    server = uvicorn.Server(config)
    graceful = server.handle_exit

    def handle_exit(sig: int, frame) -> None:
        if server.started:
            graceful(sig, frame)
            return
        log.warning("stopped by signal %d during start-up", sig)
        signal.signal(sig, signal.SIG_DFL)  # nothing to finish yet: die of the signal, as a process without handlers
        os.kill(os.getpid(), sig)

    server.handle_exit = handle_exit  # uvicorn installs it as the signal handler when it starts serving
    if on_listening is not None:
        threading.Thread(target=_when_started, args=(server, on_listening), name="hmrec-announce", daemon=True).start()
    server.run(sockets=sockets)


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
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            pause.wait(POLL_SECONDS)
    return False
