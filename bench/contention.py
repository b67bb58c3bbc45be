"""Benchmark the pipeline on a busy machine: the small pipeline alone, then beside a hog of busy processes.

    .venv/bin/python bench/contention.py                          # this checkout, small sample, 2 rounds
    .venv/bin/python bench/contention.py --reference HEAD~1       # and the parent commit, measured the same way
    .venv/bin/python bench/contention.py --only A --reference B   # two other revisions (a change and its parent)
    .venv/bin/python bench/contention.py --scale tiny --rounds 1  # a quick check that it runs
    .venv/bin/python bench/contention.py --make-run --rounds 1    # `make run` on a fresh clone instead
    .venv/bin/python bench/contention.py --spinning               # and this checkout with OpenMP's spinning wait

The hog is `--hog` (default 2) unpinned Python processes spinning at the same nice level as the pipeline: on a
2-core machine a fair share beside it is half the cores, so a pipeline that is 2x slower beside it is fair and
one that is much slower loses time to its own threads spinning or oversubscribing (issue 23's target: at most
2.5x). Quiet and busy runs alternate, and the checkouts alternate within each round, so a drift in the machine's
own load falls on every column alike. The reference is checked out with `git worktree` in a temporary folder and
run with its own source first on PYTHONPATH, in this virtual environment. Each run is a fresh `hmrec pipeline`
child on a fresh working folder; the sample is generated once, by this checkout, and shared. With `--make-run`,
each run is `make run` on a fresh `git clone` of this checkout (its own virtual environment from pip's cache, its
own sample, the pipeline), timed until its service answers /ready with 200, then stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

from child import machine

ROOT = Path(__file__).resolve().parents[1]
HOG = "while True: pass"


@contextmanager
def hog(processes: int):
    """`processes` busy Python processes, unpinned, at this process's nice level, stopped on exit."""
    children = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(processes)]
    try:
        yield
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()


@contextmanager
def checkout(rev: str):
    """A detached `git worktree` of `rev` in a temporary folder, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="hmrec-reference-") as parent:
        path = Path(parent) / "checkout"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), rev], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=True)


# libgomp's own default: without OMP_WAIT_POLICY an idle worker spins this many rounds (about 3 ms) before it
# sleeps; set explicitly, it overrides the PASSIVE policy hmrec sets (hmrec/cpus.py)
SPINNING = {"GOMP_SPINCOUNT": "300000"}


def run_pipeline(source: Path, raw: Path, workdir: Path, extra_env: dict[str, str] | None = None) -> float:
    """Wall seconds of `hmrec pipeline` run from `source`'s code on a fresh working folder."""
    env = {**os.environ, "PYTHONPATH": str(source / "src"), **(extra_env or {})}
    command = [sys.executable, "-m", "hmrec.cli", "pipeline", "--raw", str(raw), "--workdir", str(workdir)]
    log = workdir.with_name(workdir.name + ".log")
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, env=env, cwd=source, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"hmrec pipeline from {source} exited with {done.returncode}: {log.read_text()[-2000:]}")
    return time.perf_counter() - started


def run_make_run(folder: Path) -> float:
    """Wall seconds of `make run` on a fresh clone of this checkout in `folder`, until its service is ready."""
    from hmrec.serving.launch import wait_until_ready
    from hmrec.support.launcher import free_port

    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], check=True)
    port = free_port()
    log = folder / "make-run.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        make = subprocess.Popen(["make", "-C", str(folder), "run", f"PORT={port}"], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_until_ready("127.0.0.1", port, lambda: make.poll() is not None):
            raise RuntimeError(f"make run exited with {make.returncode}: {log.read_text()[-2000:]}")
        return time.perf_counter() - started
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=60)


def measure(runs: dict[str, Callable[[Path], float]], scratch: Path, rounds: int, hog_processes: int):
    """{(checkout name, "quiet" | "busy"): [seconds per round]}, quiet and busy alternating; each run is given a
    fresh folder."""
    times: dict[tuple[str, str], list[float]] = {}
    for round_ in range(rounds):
        for condition in ("quiet", "busy"):
            for name, run in runs.items():
                workdir = scratch / f"{name}-{condition}-{round_}".replace(" ", "-")
                with hog(hog_processes if condition == "busy" else 0):
                    seconds = run(workdir)
                times.setdefault((name, condition), []).append(seconds)
                print(f"round {round_ + 1}, {name}, {condition}: {seconds:.1f} s", file=sys.stderr)
    return times


def _pipelines(sources: dict[str, Path], raw: Path, spinning: bool) -> dict[str, Callable[[Path], float]]:
    runs = {name: (lambda workdir, source=source: run_pipeline(source, raw, workdir)) for name, source in
            sources.items()}
    if spinning:
        runs["this checkout, spinning"] = lambda workdir: run_pipeline(ROOT, raw, workdir, SPINNING)
    return runs


def table(times: dict[tuple[str, str], list[float]], names: list[str]) -> str:
    lines = ["| checkout | quiet runs (s) | busy runs (s) | quiet median | busy median | busy / quiet |",
             "|---|---|---|---|---|---|"]
    for name in names:
        quiet, busy = times[(name, "quiet")], times[(name, "busy")]
        q, b = statistics.median(quiet), statistics.median(busy)
        lines.append(f"| {name} | {', '.join(f'{s:.1f}' for s in quiet)} | {', '.join(f'{s:.1f}' for s in busy)} "
                     f"| {q:.1f} | {b:.1f} | {b / q:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small", help="sample scale: tiny, small (default) or full")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2, help="quiet + busy runs per checkout (default 2)")
    parser.add_argument("--hog", type=int, default=2, help="busy processes beside the busy runs (default 2)")
    parser.add_argument("--reference", metavar="REV", action="append", default=[],
                        help="also measure this git revision (e.g. HEAD~1); may be repeated")
    parser.add_argument("--only", metavar="REV", help="measure this revision in place of this checkout (with "
                        "--reference: a past change against its parent, the sample still generated by this checkout)")
    parser.add_argument("--spinning", action="store_true", help="also measure this checkout with OpenMP's default "
                        "wait (idle workers spin about 3 ms before they sleep): what the sleeping pools cost quietly")
    parser.add_argument("--make-run", action="store_true", help="time `make run` on a fresh clone of this checkout "
                        "until its service is ready, instead of the pipeline (SCALE as the Makefile's: small)")
    args = parser.parse_args()
    if args.make_run:
        with tempfile.TemporaryDirectory(prefix="hmrec-contention-") as scratch_name:
            times = measure({"make run": run_make_run}, Path(scratch_name), args.rounds, args.hog)
        print(f"`make run` on a fresh clone, {args.rounds} round(s), hog of {args.hog} busy process(es); "
              f"{machine()}, load now {os.getloadavg()[0]:.1f}")
        print(table(times, ["make run"]))
        return
    with tempfile.TemporaryDirectory(prefix="hmrec-contention-") as scratch_name:
        scratch = Path(scratch_name)
        raw = scratch / "raw"
        generate = ["data", "generate", "--scale", args.scale, "--seed", str(args.seed), "--out", str(raw)]
        subprocess.run([sys.executable, "-m", "hmrec.cli", *generate], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        with ExitStack() as stack:
            sources = {args.only: stack.enter_context(checkout(args.only))} if args.only else {"this checkout": ROOT}
            for rev in args.reference:
                sources[rev] = stack.enter_context(checkout(rev))
            runs = _pipelines(sources, raw, args.spinning)
            times = measure(runs, scratch, args.rounds, args.hog)
    print(f"{args.scale} pipeline, {args.rounds} round(s), hog of {args.hog} busy process(es); {machine()}, "
          f"load now {os.getloadavg()[0]:.1f}")
    print(table(times, list(runs)))


if __name__ == "__main__":
    main()
