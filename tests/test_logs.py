"""Quiet logs and progress bars: third-party chatter off unless -v, plain numbers, bars only on a terminal."""

from __future__ import annotations

import io
import logging
import sys

import numpy as np
import pytest

from hmrec import logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging():
    """The root logger and the chatty loggers are put back after the test."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers, root.level = saved
    for name in logs.CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET)


def capture(monkeypatch, stream: io.StringIO | None = None) -> io.StringIO:
    """Make `stream` this test's stderr (set inside the test: pytest sets its own capture between phases)."""
    stream = stream if stream is not None else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


def test_third_party_chatter_is_off_by_default_and_back_with_verbose(monkeypatch, restore_logging):
    stderr = capture(monkeypatch)
    logs.configure(verbose=False)
    logging.getLogger("implicit").info("loss 0.1234")
    logging.getLogger("faiss.loader").info("Could not load library with AVX2 support")
    logging.getLogger("implicit").warning("a real warning")
    assert "loss" not in stderr.getvalue() and "AVX2" not in stderr.getvalue()
    assert "a real warning" in stderr.getvalue()
    logs.configure(verbose=True)
    logging.getLogger("implicit").info("loss 0.1234")
    assert "implicit: loss 0.1234" in stderr.getvalue()


def test_numbers_and_dicts_are_logged_as_a_person_writes_them(monkeypatch, restore_logging):
    stderr = capture(monkeypatch)
    logs.configure()
    logging.getLogger("hmrec.test").info("best %s, count %s", {"ndcg@12": np.float64(0.25)}, np.int64(3))
    assert "best ndcg@12 0.25, count 3" in stderr.getvalue()
    logging.getLogger("hmrec.test").info("chosen %s", {"map": 0.061234567890123456, "rows": 67926, "kind": "ivf"})
    assert "chosen map 0.06123, rows 67,926, kind ivf" in stderr.getvalue()
    assert "np." not in stderr.getvalue()


def test_without_a_terminal_a_stage_is_two_log_lines_and_no_bar(monkeypatch, restore_logging):
    stderr = capture(monkeypatch)
    logs.configure()
    assert list(logs.progress(range(5), "counting", unit="numbers")) == [0, 1, 2, 3, 4]
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("counting: started (5 numbers)")
    assert "counting: done in " in lines[1]


def test_on_a_terminal_a_bar_with_eta_is_drawn_then_removed(monkeypatch, restore_logging):
    terminal = capture(monkeypatch, Terminal())
    logs.configure()
    with logs.bar("two-tower", total=10, unit="examples") as stage:
        stage.describe("two-tower epoch 1/2")
        stage.advance(10)
    drawn = terminal.getvalue()
    assert "two-tower epoch 1/2" in drawn and "ETA" in drawn and "10/10" in drawn
    assert "hmrec.logs: two-tower: done in " in drawn.splitlines()[-1]  # the bar is gone; the log line stays


def test_the_cli_can_turn_bars_off_even_on_a_terminal(monkeypatch, restore_logging):
    terminal = capture(monkeypatch, Terminal())
    logs.configure(bars=False)
    with logs.bar("quiet", total=3) as stage:
        stage.advance(3)
    assert "ETA" not in terminal.getvalue()
    assert "quiet: started (3 it)" in terminal.getvalue()
