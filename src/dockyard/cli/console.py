"""`dockyard console`: a one-time sign-in link to the web console of the local dockyard.

It asks the running dockyard (its operator-only route `POST /api/console/sign-in-links`) with the
operator's identity from the home, prints the link, and opens it in a browser when one is there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from dockyard.cli.connect import HomeOption
from dockyard.cli.output import EXIT_UNREACHABLE, fail


def console_command(
    open_browser: bool = typer.Option(True, "--open/--no-open", help="Open the link in a browser when one is there."),
    home: Path = HomeOption,
) -> None:
    """Print a one-time link that signs a browser in to the web console (single use, 15 minutes).

    Exit codes: 0 printed; 3 dockyard not running or credential refused.
    """
    import httpx

    from dockyard.cli.connect import local_exports

    exports = local_exports(home)
    base = exports["AZURE_AI_PROJECT_ENDPOINT"].rsplit("/api/projects/", 1)[0]
    try:
        with httpx.Client(verify=exports["REQUESTS_CA_BUNDLE"], timeout=30) as client:
            token = client.get(exports["IDENTITY_ENDPOINT"],
                               params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                               headers={"X-IDENTITY-HEADER": exports["IDENTITY_HEADER"]})
            if token.status_code != 200:
                fail(f"dockyard refused this home's identity ({token.status_code}).", EXIT_UNREACHABLE)
            answer = client.post(f"{base}/api/console/sign-in-links",
                                 headers={"authorization": f"Bearer {token.json()['access_token']}"})
    except httpx.HTTPError as exc:
        fail(f"could not reach dockyard: {exc}", EXIT_UNREACHABLE)
    if answer.status_code != 201:
        fail(f"dockyard did not make a sign-in link ({answer.status_code}): {answer.text[:200]}", EXIT_UNREACHABLE)
    url = str(answer.json()["url"])
    sys.stdout.write(f"{url}\n")
    if open_browser and _has_browser():
        import webbrowser

        webbrowser.open(url)


def _has_browser() -> bool:
    """A graphical session (or macOS / Windows), where opening a browser is what the person expects."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
