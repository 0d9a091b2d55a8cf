"""What the workflow commands share about talking to people: consoles, exit codes, errors, progress.

Every command follows the same habits, so they are written once here: results on stdout, errors and
progress on stderr (so `--json` output stays parseable and pipes stay clean), no colour or animation
when the stream is not a terminal (Rich decides, and honours NO_COLOR), and one exit code table.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

# Exit codes, the same for every workflow command (documented in each command's --help and docs/workflow.md).
EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed: a build, a version that did not become active, an agent error
EXIT_USAGE = 2  # the command or the project is wrong: arguments, agent.yaml, no registry where one is needed
EXIT_UNREACHABLE = 3  # the target could not be reached or refused us: dockyard not running, no endpoint, 401/403
EXIT_NOT_FOUND = 4  # no such agent, version or session


def stdout() -> Console:
    """Results. Off a terminal Rich writes no colour; a CI log is wide, so do not fold tables at 80.

    Rich is imported here, when something is printed, not when the CLI loads: `dockyard --help` stays fast."""
    from rich.console import Console

    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=sys.stdout, highlight=False, width=160)
    return console


def stderr() -> Console:
    """Errors, notes and progress: never mixed into what a script reads from stdout."""
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False)


def fail(message: str, code: int = EXIT_FAILED, *, details: str | None = None) -> NoReturn:
    """Print `dockyard: error: MESSAGE` (and details) on stderr and exit with `code`."""
    typer.echo(f"dockyard: error: {message}", err=True)
    if details:
        typer.echo(details.rstrip("\n"), err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    """A remark for the person at the terminal, on stderr."""
    typer.echo(message, err=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def progress(message: str) -> Iterator[Any]:
    """A spinner with a message on stderr for anything that takes a while; off a terminal, one line instead.

    Yields the Rich status (its `.update(text)` changes the message) or, off a terminal, an object with the
    same method that prints each new message once, so a CI log still shows what happened when."""
    console = stderr()
    if console.is_terminal:
        with console.status(message) as status:
            yield status
    else:
        console.print(message, markup=False, soft_wrap=True)
        yield _PlainStatus(console, message)


class _PlainStatus:
    def __init__(self, console: Console, message: str) -> None:
        self.console = console
        self.last = message

    def update(self, message: str) -> None:
        if message != self.last:
            self.console.print(message, markup=False, soft_wrap=True)
            self.last = message
