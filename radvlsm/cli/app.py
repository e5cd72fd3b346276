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
    """Attach the commands. Imported here, not at module top, so each command module stays independent.

    ``short_help`` is the one line of ``radvlsm --help``; each command's own ``--help`` gives its whole docstring.
    """
    from radvlsm.cli import evaluate as _ev

    app.command("evaluate", short_help="Score predicted masks against reference masks (Dice, IoU, HD95, ASSD).")(
        _ev.evaluate
    )

    from radvlsm.cli import train as _train

    train_app.command("segmenter")(_train.segmenter)
    train_app.command("localizer")(_train.localizer)
    train_app.command(
        "diagnoser", short_help="Train the diagnosis head of one task (PH2 dermoscopy, breast ultrasound, LIDC CT)."
    )(_train.diagnoser)

    from radvlsm.cli import segment as _segment

    app.command(
        "segment", short_help="Lesion masks from box prompts, a text prompt, or CT nodule positions."
    )(_segment.segment)
    app.command(
        "diagnose", short_help="Segment, then diagnose each lesion: class probabilities in diagnoses.csv."
    )(_segment.diagnose)

    from radvlsm.cli import radiomics as _radiomics

    app.command(
        "radiomics", short_help="pyradiomics features of each lesion mask, one CSV row per case (resumable)."
    )(_radiomics.radiomics)

    from radvlsm.cli import report as _report

    app.command(
        "report", short_help="Findings and reports (JSON, Markdown, HTML) of images or of an output folder."
    )(_report.report)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
