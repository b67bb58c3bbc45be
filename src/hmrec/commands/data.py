"""`hmrec data`: write a synthetic dataset in the raw format, or profile any dataset in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hmrec.commands.shared import TestDays, fail

data_app = typer.Typer(help="Generate or describe raw datasets.", no_args_is_help=True)


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Option(help="Folder to write the three CSV files into.")],
    scale: Annotated[str, typer.Option(help="tiny (tests), small (make run), full (real sizes) or 3x (three "
                                            "times H&M, for scale benchmarks).")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same bytes.")] = 7,
    world: Annotated[str, typer.Option(help="fashion (the H&M-like sample), grocery or media.")] = "fashion",
) -> None:
    """Write a synthetic dataset in exactly the real H&M files' format."""
    from hmrec.sample.generate import SCALES, generate
    from hmrec.sample.worlds import WORLDS

    if scale not in SCALES:
        fail(f"--scale must be one of {', '.join(SCALES)}, not {scale!r}")
    if world not in WORLDS:
        fail(f"--world must be one of {', '.join(WORLDS)}, not {world!r}")
    counts = generate(scale=scale, seed=seed, out=out, world=world)
    typer.echo(f"wrote {out}: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))


@data_app.command("profile")
def data_profile(
    raw: Annotated[Path, typer.Argument(help="Folder holding the three raw CSV files.")],
    test_days: TestDays = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    world: Annotated[str | None, typer.Option(help="Show this sample world's bands beside the figures.")] = None,
) -> None:
    """Print the behaviour table of docs/hm-data.md for any dataset in the raw format, beside the real values."""
    from hmrec.evaluation.profile import format_profile, out_of_band, profile
    from hmrec.sample.worlds import WORLDS

    if world is not None and world not in WORLDS:
        fail(f"--world must be one of {', '.join(WORLDS)}, not {world!r}")
    bands = WORLDS[world].bands if world else ()

    try:
        result = profile(raw, test_days=test_days)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    if world:
        result["world"], result["out_of_band"] = world, out_of_band(result, bands)
    typer.echo(json.dumps(result, indent=2) if as_json else format_profile(result, bands, world or ""))
