"""`hmrec registry`: list, show, promote the registered model versions and point aliases at them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hmrec.commands.shared import Wait, fail, readable_workdir, writes_workdir

registry_app = typer.Typer(help="Model versions in the registry.", no_args_is_help=True)


@registry_app.command("list")
def registry_list(workdir: Annotated[Path, typer.Option(help="Pipeline working folder.")] = Path("work")) -> None:
    """List registered model versions; the champion is marked."""
    from hmrec.registry.versions import Registry, RegistryError

    readable_workdir(workdir)
    try:
        lines = Registry.for_workdir(workdir).describe_all()
    except RegistryError as error:
        fail(str(error))
    for line in lines:
        typer.echo(line)


@registry_app.command("show")
def registry_show(
    version: int,
    workdir: Annotated[Path, typer.Option(help="Pipeline working folder.")] = Path("work"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest (every file's sha256) as JSON.")]
    = False,
) -> None:
    """Summarise one version: aliases, data, metrics and the settings validation chose (--json: the manifest)."""
    from hmrec.registry.versions import Registry, RegistryError

    readable_workdir(workdir)
    try:
        registry = Registry.for_workdir(workdir)
        manifest = registry.manifest(version)
    except RegistryError as error:
        fail(str(error))
    typer.echo(json.dumps(manifest, indent=2) if as_json else "\n".join(_version_summary(registry, version, manifest)))


def _version_summary(registry, version: int, manifest: dict) -> list[str]:
    """At most ~40 lines: what a person asks of a version; the checksums stay in the manifest (--json)."""
    model = registry.client.get_model_version(registry.name, str(version))
    params = registry.client.get_run(model.run_id).data.params if model.run_id else {}
    aliases = ", ".join(sorted(model.aliases)) or "none"
    lines = [f"{registry.name} version {version}  (aliases: {aliases})",
             f"created     {manifest.get('created', '-')}  pipeline run {manifest.get('run_id', '-')}",
             f"data        up to {manifest.get('data_end', '-')}; the last {params.get('test_days', '?')} days held "
             f"out for evaluation; store {str(manifest.get('store_fingerprint', '-'))[:12]}",
             f"answers     {manifest.get('final', '-')} (customers without history: {manifest.get('cold_start', '-')})",
             f"files       {len(manifest.get('files', {}))}, each with its sha256 in manifest.json (--json shows them)"]
    metrics = {name: values for name, values in (manifest.get("metrics") or {}).items() if isinstance(values, dict)}
    if metrics:
        keys = list(next(iter(metrics.values())))
        width = max(len(name) for name in metrics)
        header = "  " + "method".ljust(width) + "".join(f"  {k:>10}" for k in keys)
        lines += ["", "metrics on the held-out window", header]
        lines += ["  " + name.ljust(width) + "".join(f"  {values.get(k, float('nan')):>10.4f}" for k in keys)
                  for name, values in metrics.items()]
    chosen = {name.removeprefix("chosen."): value for name, value in sorted(params.items())
              if name.startswith("chosen.")}
    if chosen:
        width = max(len(name) for name in chosen)
        lines += ["", "settings chosen on validation"]
        lines += [f"  {name.ljust(width)}  {value}" + (" (source left out: no candidates from it)"
                  if name.startswith("n_per_source.") and value == "0" else "") for name, value in chosen.items()]
    return lines


@registry_app.command("promote")
@writes_workdir
def registry_promote(
    version: int, workdir: Annotated[Path, typer.Option(help="Pipeline working folder.")] = Path("work"),
    wait: Wait = False,
) -> None:
    """Make VERSION the champion that the service loads."""
    from hmrec.registry.versions import Registry, RegistryError
    from hmrec.registry.writer import workdir_writer
    from hmrec.workdir import LockedError

    readable_workdir(workdir)
    try:
        with workdir_writer(workdir, wait=wait):
            Registry.for_workdir(workdir).promote(version)
    except (RegistryError, LockedError) as error:
        fail(str(error))
    typer.echo(f"version {version} is now champion")


@registry_app.command("alias")
@writes_workdir
def registry_alias(
    alias: str, version: int, workdir: Annotated[Path, typer.Option(help="Pipeline working folder.")] = Path("work"),
    wait: Wait = False,
) -> None:
    """Point ALIAS (e.g. challenger, a variant of `hmrec experiment start`) at VERSION; champion moves by promote."""
    from hmrec.registry.experiment import ALIAS_RULE
    from hmrec.registry.versions import Registry, RegistryError
    from hmrec.registry.writer import workdir_writer
    from hmrec.workdir import LockedError

    if not ALIAS_RULE.match(alias):
        fail(f"alias {alias[:40]!r} is not a registry alias name: a letter or _, then letters, digits, _ or -")
    readable_workdir(workdir)
    try:
        with workdir_writer(workdir, wait=wait):
            Registry.for_workdir(workdir).set_alias(alias, version)
    except (RegistryError, LockedError) as error:
        fail(str(error))
    typer.echo(f"version {version} is now {alias}")
