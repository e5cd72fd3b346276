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
    """Attach the commands, in the order ``radvlsm --help`` lists them.

    Each command's module is imported here, not at module top, so that each stays independent. The text beside a
    command is the one line of ``radvlsm --help`` (``short_help``); its own ``--help`` gives its whole docstring.
    """
    from radvlsm.cli import evaluate, radiomics, report, segment, train

    commands = (
        (app, "evaluate", evaluate.evaluate,
         "Score predicted masks against reference masks (Dice, IoU, HD95, ASSD)."),
        (train_app, "segmenter", train.segmenter, None),
        (train_app, "localizer", train.localizer, None),
        (train_app, "diagnoser", train.diagnoser,
         "Train the diagnosis head of one task (PH2 dermoscopy, breast ultrasound, LIDC CT)."),
        (app, "segment", segment.segment, "Lesion masks from box prompts, a text prompt, or CT nodule positions."),
        (app, "diagnose", segment.diagnose,
         "Segment, then diagnose each lesion: class probabilities in diagnoses.csv."),
        (app, "radiomics", radiomics.radiomics,
         "pyradiomics features of each lesion mask, one CSV row per case (resumable)."),
        (app, "report", report.report,
         "Findings and reports (JSON, Markdown, HTML) of images or of an output folder."),
    )
    for parent, name, function, short_help in commands:
        parent.command(name, short_help=short_help)(function)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
