"""The ``radvlsm`` command: one typer app, each command in a module of its own."""

from __future__ import annotations

import typer

from radvlsm import __version__
from radvlsm.cli.logsetup import setup_logging

app = typer.Typer(
    name="radvlsm",
    help="Find, segment and diagnose lesions in medical images, and write the report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(help="Train the embedded default models.", no_args_is_help=True)
app.add_typer(train_app, name="train")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"radvlsm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings and errors only."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    setup_logging(1 if verbose else -1 if quiet else 0)


def _register() -> None:
    """Attach the commands. Imported here, not at module top, so each command module stays independent."""
    from radvlsm.cli import evaluate as _ev

    app.command("evaluate")(_ev.evaluate)

    from radvlsm.cli import train as _train

    train_app.command("segmenter")(_train.segmenter)
    train_app.command("localizer")(_train.localizer)
    train_app.command("diagnoser")(_train.diagnoser)

    from radvlsm.cli import segment as _segment

    app.command("segment")(_segment.segment)
    app.command("diagnose")(_segment.diagnose)

    from radvlsm.cli import radiomics as _radiomics

    app.command("radiomics")(_radiomics.radiomics)

    from radvlsm.cli import report as _report

    app.command("report")(_report.report)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
