"""The `hmrec` command: a thin shell assembling the sub-commands of hmrec.commands. Only the CLI prints."""

from __future__ import annotations

from typing import Annotated

from hmrec import cpus

cpus.blas_pools()  # before numpy (imported by logs); the commands with thread pools size them (size_pools)

import typer  # noqa: E402

from hmrec import logs  # noqa: E402
from hmrec.commands import data, experiment, registry, retrain, serve, stages  # noqa: E402
from hmrec.commands.shared import writes_workdir  # noqa: E402


def _flags_without_a_type(display_type_rich):
    """typer 0.29's rich help shows `<bool>` beside every flag (`--promote / --no-promote <bool>`), which reads as if
    the flag took a value; a flag shows no type."""

    def shown(self, ctx):
        return None if self.is_flag else display_type_rich(self, ctx)

    return shown


typer.core.TyperOption.display_type_rich = _flags_without_a_type(typer.core.TyperOption.display_type_rich)
app = typer.Typer(help="hmrec: raw H&M-format retail data -> feature store -> models -> live service.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

# the stages and the service, then the groups: the order `hmrec --help` lists them in
app.command("etl")(stages.etl)
app.command("evaluate")(writes_workdir(stages.evaluate))
app.command("pipeline")(writes_workdir(stages.pipeline))
app.command("precompute")(writes_workdir(stages.precompute))
app.command("retrain")(writes_workdir(retrain.retrain))
app.command("serve")(serve.serve)
app.add_typer(data.data_app, name="data")
app.add_typer(registry.registry_app, name="registry")
app.add_typer(serve.events_app, name="events")
app.add_typer(experiment.experiment_app, name="experiment")

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]


@app.callback()
def main(verbose: Verbose = False) -> None:
    logs.configure(verbose)


if __name__ == "__main__":
    app()
