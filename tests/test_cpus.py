"""How idle OpenMP threads wait: spinning where the machine is quiet as a command starts, asleep where other tasks
want a CPU or the load cannot be read, and as the user says where they set it."""

from __future__ import annotations

import os

import pytest

from hmrec import cpus


@pytest.fixture
def environment(monkeypatch):
    """No wait variable set, and a machine of 2 CPUs the command may use."""
    for name in (*cpus.USER_WAITS, "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HMREC_THREADS", "2")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    return monkeypatch


class Loadavg:
    """A /proc/loadavg whose running count reads `running[i]` on the i-th read (the last one after that)."""

    def __init__(self, *running: int):
        self.running = list(running)

    def read_text(self) -> str:
        count = self.running.pop(0) if len(self.running) > 1 else self.running[0]
        return f"1.00 0.80 0.50 {count}/312 4242\n"


def test_the_running_tasks_of_others_are_the_median_of_a_few_reads_without_the_reader(tmp_path):
    assert cpus.others_running(samples=5, every=0, loadavg=Loadavg(1, 1, 9, 1, 3)) == 0  # a blip of 8
    assert cpus.others_running(samples=5, every=0, loadavg=Loadavg(3, 3, 1, 4, 3)) == 2  # a busy machine
    (tmp_path / "garbled").write_text("no counts here")
    assert cpus.others_running(loadavg=tmp_path / "garbled") is None
    assert cpus.others_running(loadavg=tmp_path / "missing") is None


def test_a_quiet_machine_keeps_openmps_spinning_wait(environment):
    said = cpus.quiet_waits(Loadavg(1))  # the reader itself
    assert "OMP_WAIT_POLICY" not in os.environ and "KMP_BLOCKTIME" not in os.environ
    assert said == cpus.waits_chosen and "spin" in said
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"


@pytest.mark.parametrize("others", [1, 3, None])
def test_other_tasks_wanting_a_cpu_or_an_unreadable_load_make_idle_threads_sleep(environment, tmp_path, others):
    said = cpus.quiet_waits(tmp_path / "missing" if others is None else Loadavg(others + 1))
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["KMP_BLOCKTIME"] == "0"
    assert "sleep at once" in said and ("could not be read" in said if others is None else f"{others} other" in said)


def test_a_wait_the_user_set_is_kept_whatever_the_load(environment):
    environment.setenv("GOMP_SPINCOUNT", "300000")
    said = cpus.quiet_waits(Loadavg(4))
    assert "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT=300000" in said
    environment.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cpus.quiet_waits(Loadavg(1))
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
