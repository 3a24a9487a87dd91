"""`hn smoke m5`: the whole federation scenario on this machine, in temporary homes."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Optional

import typer

from hn.cli.context import STATE
from hn.cli.output import console, emit, table
from hn.errors import HnError

app = typer.Typer(help="End-to-end scenarios against real nodes on this machine.", no_args_is_help=True)


class ScenarioFailed(HnError):
    """The scenario failed."""


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise KeyboardInterrupt


@app.command("m5")
def m5(as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
       narrate: bool = typer.Option(False, "--narrate", help="Explain each step as it runs."),
       keep: bool = typer.Option(False, "--keep", help="Keep the temporary homes for inspection."),
       relay_ttl: int = typer.Option(6, "--relay-ttl", help="Relay TTL used for the expiry step (seconds).")) -> None:
    """Four real nodes (alice as hub, bob, carol, dora): discovery, federation, shards,
    relays, trust, backup and recovery. Exit 0 only if every step passes."""
    from hn.smoke.m5 import Scenario

    signal.signal(signal.SIGTERM, _interrupt)
    live = not as_json

    def show(result: object) -> None:
        if live:
            r = result  # StepResult
            mark = "[green]pass[/green]" if r.ok else "[red]FAIL[/red]"  # type: ignore[attr-defined]
            console.print(f"{mark} {r.name} ({r.seconds:.1f} s): {r.detail}")  # type: ignore[attr-defined]

    scenario = Scenario(relay_ttl=relay_ttl, keep=keep,
                        say=(lambda msg: console.print(f"[dim]{msg}[/dim]")) if narrate and live else None)
    try:
        report = scenario.run(show)
    except KeyboardInterrupt:
        print("interrupted: nodes stopped, temporary homes removed", file=sys.stderr)
        STATE.interrupt_reported = True
        raise typer.Exit(130) from None
    emit(report, as_json, lambda d: table(
        f"hn smoke m5: {'PASS' if d['ok'] else 'FAIL'} in {d['seconds']:.1f} s",
        ["step", "result", "seconds", "detail"],
        [[s["step"], "pass" if s["ok"] else "FAIL", f"{s['seconds']:.1f}", s["detail"]] for s in d["steps"]]))
    if not report["ok"]:
        raise ScenarioFailed("smoke m5 failed: " + next(s["step"] for s in report["steps"] if not s["ok"]))
