"""One or several uvicorn worker processes on one port, each listening on its own SO_REUSEPORT socket.

uvicorn's own `--workers` shares one listening socket, and an asyncio server accepts every connection waiting
when it wakes: a burst of new connections (a client pool opening, a load balancer reconnecting) can all land on
one worker while the others idle. With one socket per worker, the kernel spreads connections over them as they
arrive. The parent only supervises: it restarts a worker that dies, replaces one that stops answering its pings (a
watchdog over a pipe to each worker, independent of the event store: a frozen worker would otherwise keep taking
connections it never answers; with one worker, the whole service would hang) and stops them all on SIGTERM or
SIGINT; a worker also stops when the parent dies, even by SIGKILL (the watchdog's pipe reaches its end), so none
serves on orphaned. The first workers listen before their model has loaded (/ready answers 503 meanwhile); a worker
replacing one can be given another app factory that loads first, so the workers already serving take every connection.
SO_REUSEPORT would let a second service bind the port beside a running one, so `hmrec serve` calls
`refuse_if_served` first.

Workers are forked from a fork server that imported the `preload` modules once (the app and MLflow's client,
what every worker imports whatever its bundle): each worker, a replacement included, starts without importing
them again, and their pages are shared. The fork server has only imported: no code of ours ran there, and the
libraries' pools start on first use, in the worker (Polars' and torch's), or re-create their threads in the child
(numpy's BLAS, jemalloc); forking it is safe where forking the supervisor (its threads, its locks) would not be.
Measured on this machine: the tests' hand-made bundle answers /ready 2.7-3.4 s after start (3.0-4.1 s spawned),
the tiny pipeline's 4.9-6.2 s (5.1-6.9); preloading torch, FAISS and LightGBM too made the first worker wait for
them even where its bundle needs none.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

STARTUP_FAILURE = 3  # uvicorn's exit code when a worker cannot start; restarting would fail the same way
STOP_GRACE_SECONDS = 15


class PortTakenError(OSError):
    """Another process on this machine already accepts connections on the port; the message says so."""


def refuse_if_served(host: str, port: int) -> None:
    """Raise PortTakenError if something already accepts connections on (host, port).

    A bind alone cannot tell: our sockets set SO_REUSEPORT, so a second service's bind beside a running one
    succeeds and the kernel shares the connections out between the two. Services on other machines, sharing
    one event store, are not seen here and stay allowed."""
    target = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        with socket.create_connection((target, port), timeout=2):
            pass
    except OSError:
        return  # nothing listens there
    raise PortTakenError(f"{host}:{port} is already served by another process on this machine (an earlier "
                         f"`hmrec serve`?); stop it, or choose another --port")


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) that other processes of this user can bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _answer_pings(pipe: Connection) -> None:
    """The worker's side of the watchdog: answer each ping until the pipe ends, then stop as SIGTERM stops it.

    The supervisor closes its end only once this worker has exited (or been killed), so an end seen here means
    the supervisor died, a SIGKILL or the OOM killer included. Linux's parent-death signal cannot tell: a
    worker's parent is the fork server, which itself lives as long as any of its children."""
    try:
        while True:
            pipe.send_bytes(pipe.recv_bytes())
    except (EOFError, OSError):
        log.warning("the supervisor is gone: stopping this worker")
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(app: str, host: str, port: int, log_level: str, access_log: bool, pipe: Connection) -> None:
    import uvicorn

    from hmrec import logs
    from hmrec.serving.launch import run_server

    logs.configure()  # set up in this process, not inherited from the fork server
    # from the start: a worker loading its model is busy, not frozen
    threading.Thread(target=_answer_pings, args=(pipe,), name="hmrec-watchdog", daemon=True).start()
    try:
        sock = listening_socket(host, port)
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", host, port, error)
        sys.exit(STARTUP_FAILURE)
    config = uvicorn.Config(app, factory=True, host=host, port=port, log_level=log_level, access_log=access_log,
                            log_config=None)  # uvicorn's loggers go through hmrec's handler (logs.configure)
    run_server(config, sockets=[sock])  # a SIGTERM while the model loads stops the worker at once


class _Watched:
    """One worker process, the supervisor's end of its ping pipe and when it last answered."""

    def __init__(self, context, args: tuple):
        self.pipe, child = multiprocessing.Pipe()
        self.process = context.Process(target=_worker, args=(*args, child), name="hmrec-worker")
        self.process.start()
        child.close()
        self.answered = time.monotonic()

    def ping(self) -> None:
        """Collect the answers to earlier pings, then send one more."""
        try:
            while self.pipe.poll():
                self.pipe.recv_bytes()
                self.answered = time.monotonic()
            self.pipe.send_bytes(b"ping")
        except (EOFError, OSError):
            pass  # the worker died: the supervisor sees its exit code

    def stop(self) -> None:
        self.pipe.close()


def serve_workers(app: str, host: str, port: int, workers: int, log_level: str = "info",
                  access_log: bool = True, ping_timeout: float = 10.0, replacement: str | None = None,
                  preload: Sequence[str] = ()) -> int:
    """Run `workers` processes serving the app factory `app` ("module:function") until told to stop; the exit code.
    A worker that answers no ping for `ping_timeout` seconds is killed and replaced; one that dies is replaced;
    replacements serve the factory `replacement` (default: `app`). `preload`: modules the fork server imports once
    for every worker (one it cannot import is imported by the worker that needs it, which then says why)."""
    listening_socket(host, port).close()  # fail here, once, if the port is taken by a process we cannot share with
    context = multiprocessing.get_context("forkserver")  # forked from a process that only imported: see above
    context.set_forkserver_preload(list(preload))
    stop = threading.Event()
    args = (app, host, port, log_level, access_log)
    later = (replacement or app, *args[1:])

    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    watched = [_Watched(context, args) for _ in range(workers)]
    code = 0
    try:
        while not stop.wait(0.5):
            for i, worker in enumerate(watched):
                process = worker.process
                if process.is_alive():
                    worker.ping()
                    silent = time.monotonic() - worker.answered
                    if silent <= ping_timeout:
                        continue
                    log.error("worker %s answered no ping for %.0f s (frozen?); killing it and starting another",
                              process.pid, silent)
                    process.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
                    process.join(10)
                elif process.exitcode == STARTUP_FAILURE:
                    log.error("worker %s could not start; stopping", process.pid)
                    stop.set()
                    code = 1
                    break
                else:
                    log.error("worker %s exited with %s; starting another", process.pid, process.exitcode)
                    time.sleep(0.5)  # no tight loop if something kills every new worker
                worker.stop()
                watched[i] = _Watched(context, later)
    finally:
        processes = [worker.process for worker in watched]
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then the lifespan ends
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for worker in watched:
            worker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
