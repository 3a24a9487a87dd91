"""`hn policy`: the owner's named policies."""

from __future__ import annotations

from typing import Optional

import typer

from hn.cli.context import STATE
from hn.cli.output import emit, say, table
from hn.errors import InputError, NoIdentity, UsageError
from hn.vault import identities, policy

app = typer.Typer(help="Policies: who may read, relay, store and see what.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document.")


@app.command("set")
def set_(name: str, value: str,
         target: Optional[str] = typer.Option(None, "--target", help="A DID, or '*' for anyone."),
         as_json: bool = JSON) -> None:
    """Set policy NAME to VALUE (for one --target, or as the default)."""
    try:  # a name, value or target the policy cannot take is a usage error, found before anything is written
        policy.check(name, value, target)
        if name in policy.SELECTABLE:
            from hn.trust import selectors

            selectors.validate(value)
    except InputError as exc:
        raise UsageError(exc.message) from exc
    home = STATE.home
    home.ensure()
    policy.set_policy(home, name, value, target)
    try:
        me = identities.load(home)
        with home.lock():
            home.append_event(me.keys, "policy.set", {"name": name, "value": value, "target": target})
    except NoIdentity:
        pass
    emit({"name": name, "value": value, "target": target}, as_json,
         lambda d: say("{} = {}" + (" for {}" if target else ""), name, value, *([target] if target else [])))


@app.command("show")
def show(as_json: bool = JSON) -> None:
    """Show every policy with its value, where that comes from (policy, profile, default) and per-target values."""
    data = policy.show(STATE.home)
    emit({"policies": data}, as_json, lambda d: table(
        None, ["policy", "value", "from", "targets", "meaning"],
        [[k, v["value"], _source(v), ", ".join(f"{t}={x}" for t, x in v["targets"].items()), v["description"]]
         for k, v in d["policies"].items()]))


def _source(entry: dict[str, object]) -> str:
    refused = entry.get("refused_profile_value")
    return str(entry["source"]) + (f" (the profile's {refused!r} is not a value it takes)" if refused else "")
