"""`hmrec retrain`: train on the raw data plus the service's live events, and promote only past the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hmrec.commands.shared import (
    Engine,
    HorizonDays,
    LabelWindows,
    RayAddress,
    SearchFits,
    TestDays,
    Wait,
    chosen_engine,
    fail,
    offline_process,
)


def retrain(
    raw: Annotated[Path, typer.Option(help="Folder holding the three raw CSV files (the live events are added).")],
    workdir: Annotated[Path, typer.Option(help="Working folder: store, registry, events.sqlite.")] = Path("work"),
    test_days: TestDays = 7,
    horizon_days: HorizonDays = None,
    label_windows: LabelWindows = None,
    search_fits: SearchFits = 15,
    tolerance: Annotated[float, typer.Option(min=0.0, help="Promote unless the new version's MAP@12 is below the "
                                             "champion's by more than this (absolute), on all held-out purchases "
                                             "or on those not attributed to an impression.")] = 0.001,
    challenger: Annotated[bool, typer.Option(help="A version the gate refuses becomes the `challenger` alias "
                                             "(--no-challenger: left without an alias).")] = True,
    precompute: Annotated[str, typer.Option(help="Whose answers the bundle holds precomputed: active, all or "
                                            "none.")] = "active",
    engine: Engine = None,
    ray_address: RayAddress = None,
    wait: Wait = False,
) -> None:
    """Export the live events into the training data, run the pipeline, register the new version, score it and the
    champion on the same latest held-out window, and promote it only if it is not worse (the decision and every
    figure go to MLflow)."""
    offline_process()
    from hmrec.pipeline import check_raw_inputs
    from hmrec.raw.read import RawDataError
    from hmrec.registry.versions import RegistryError
    from hmrec.registry.writer import workdir_writer
    from hmrec.retrain import RetrainConfig
    from hmrec.retrain import retrain as run_retrain
    from hmrec.scale.precompute import PRECOMPUTE
    from hmrec.serving.settings import Settings
    from hmrec.workdir import LockedError

    if precompute not in PRECOMPUTE:
        fail(f"--precompute {precompute!r} is not one of {', '.join(PRECOMPUTE)}")
    config = RetrainConfig(workdir=workdir, raw=raw, test_days=test_days, tolerance=tolerance, challenger=challenger,
                           precompute=precompute, engine=chosen_engine(engine, ray_address),
                           horizon_days=horizon_days, label_windows=label_windows, search_fits=search_fits)
    try:
        check_raw_inputs(raw)
        with workdir_writer(workdir, wait=wait), config.engine.session():
            result = run_retrain(config, Settings(workdir=workdir).events_target)
    except (RawDataError, RegistryError, LockedError) as error:
        fail(str(error))
    for label, scores in result.scores.items():
        typer.echo(f"{label:<10} MAP@12 {scores.map12:.4f} ({scores.buyers:,} buyers), not attributed to an "
                   f"impression {scores.map12_unattributed:.4f} ({scores.buyers_unattributed:,})")
    verdict = "promoted to champion" if result.promoted else \
        f"not promoted ({'now ' + result.alias if result.alias else 'no alias set'})"
    typer.echo(f"version {result.version} {verdict}: {result.reason}")
