"""The memory an experiment costs a serving worker: its resident size with the champion alone, and with the
champion and the challenger loaded side by side (each measured in a fresh process, after the load and warm-up).

    .venv/bin/python bench/experiment_memory.py --workdir work --challenger 1   # version 1 as the challenger

The challenger alias is pointed at --challenger (default: the newest version that is not the champion) for the
run and restored afterwards; events go to a temporary SQLite file."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys
from pathlib import Path
from hmrec.serving.events import SqliteEventStore
from hmrec.serving.model_holder import champion_loader
from hmrec.serving.services import build_services
from hmrec.serving.settings import Settings

def rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

workdir, scratch, experiment = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
settings = Settings(workdir=workdir, events_path=scratch / "events.sqlite", experiment_path=Path(experiment))
services = build_services(settings, SqliteEventStore(settings.events_db), champion_loader(settings))
before = rss_mib()
services.holder.reload(announce=False)
print(json.dumps({"before_load": before, "after_load": rss_mib(), "versions": services.holder.served.versions()}))
"""


def measure(workdir: Path, experiment: Path | None, scratch: Path) -> dict:
    """One fresh process: build a worker's services, load (and warm up) what it serves, report its RSS in MiB."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(workdir), str(scratch), str(experiment or scratch / "none")],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--challenger", type=int, default=None, help="the version to serve beside the champion")
    args = parser.parse_args()

    from hmrec.registry.experiment import Experiment, write_experiment
    from hmrec.registry.versions import Registry

    registry = Registry.for_workdir(args.workdir)
    champion = registry.champion_version()
    challenger = args.challenger or max(v.version for v in registry.versions() if v.version != champion)
    was = registry.alias_version("challenger")
    registry.set_alias("challenger", challenger)
    try:
        with tempfile.TemporaryDirectory() as folder:
            scratch = Path(folder)
            alone = measure(args.workdir, None, scratch)
            write_experiment(scratch / "experiment.json",
                             Experiment("memory", (("champion", 0.5), ("challenger", 0.5))))
            both = measure(args.workdir, scratch / "experiment.json", scratch)
    finally:
        if was is not None:
            registry.set_alias("challenger", was)
        else:
            registry.client.delete_registered_model_alias(registry.name, "challenger")
    for label, figures in (("champion alone", alone), ("champion + challenger", both)):
        print(f"{label:<22} versions {figures['versions']}: RSS {figures['before_load']:.0f} MiB before the load, "
              f"{figures['after_load']:.0f} MiB after (+{figures['after_load'] - figures['before_load']:.0f})")
    print(f"the second version costs {both['after_load'] - alone['after_load']:.0f} MiB per worker process")


if __name__ == "__main__":
    main()
