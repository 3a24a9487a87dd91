"""The M5 federation scenario: four real nodes and the `hn` command, end to end.

Every step drives the real `hn` binary (subprocesses) against real nodes on
127.0.0.1, exactly as a user would, and checks what it prints against what the other
nodes hold. Nodes and homes are removed at the end, also when interrupted.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hn.smoke.harness import Harness, Peer, StepFailed, StepResult, run_steps

NAMES = ("alice", "bob", "carol", "dora")


def http_status(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


VAULT_FOLDERS = ("identities", "personal", "shards", "events", "presence", "trust", "receipts", "contracts")


def tree_digests(home: Path) -> dict[str, str]:
    """BLAKE3 of every vault file a backup must bring back (caches and node state excluded)."""
    from hn.vault.store import hash_file

    out = {}
    for folder in VAULT_FOLDERS:
        for path in sorted((home / folder).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                out[str(path.relative_to(home))] = hash_file(path)[0]
    return out


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


class Scenario:
    def __init__(self, relay_ttl: int = 6, keep: bool = False, say: Callable[[str], None] | None = None) -> None:
        self.relay_ttl = relay_ttl
        self.keep = keep
        self.say = say or (lambda _m: None)
        self.h: Harness | None = None
        self.p: dict[str, Peer] = {}
        self.docs: dict[str, str] = {}
        self.shard_id = ""
        self.backup: dict[str, Any] = {}
        self.shares: list[str] = []

    # -- helpers ----------------------------------------------------------------------
    @property
    def harness(self) -> Harness:
        assert self.h is not None
        return self.h

    def hn(self, who: str | None, *args: str, input: str | None = None) -> str:
        return self.harness.hn(self.p[who] if who else None, *args, input=input).stdout

    def js(self, who: str, *args: str, input: str | None = None) -> Any:
        return self.harness.hn_json(self.p[who], *args, input=input)

    # -- steps ------------------------------------------------------------------------
    def step_identities(self) -> str:
        self.say("Each person creates an identity and adds a published document to their vault.")
        for name in NAMES:
            peer = self.harness.add_peer(name)
            self.p[name] = peer
            peer.did = self.js(name, "id", "create", name)["did"]
            note = peer.home.parent / f"{name}-note.md"
            note.write_text(f"# {name}'s note\nwritten for the smoke scenario\n")
            added = self.js(name, "doc", "add", str(note), "--publish")
            self.docs[name] = added["added"][0]["id"]
        return ", ".join(f"{n}={self.p[n].did[:18]}…" for n in NAMES)

    def step_nodes(self) -> str:
        self.say("Four nodes start on 127.0.0.1; alice's DHT node is everyone's bootstrap.")
        alice = self.p["alice"]
        self.harness.start_node(alice, "--relay-ttl", str(self.relay_ttl))
        for name in NAMES[1:]:
            self.harness.start_node(self.p[name], bootstrap=[alice.dht])
        for name in NAMES:
            status, _ = http_status(self.p[name].url + "/health")
            expect(status == 200, f"{name}'s /health answered {status}")
        return "4 nodes ready: " + ", ".join(f"{n}:{self.p[n].http_port}" for n in NAMES)

    def step_dht(self) -> str:
        self.say("Every node signs a dht_hint@1 and publishes it; every peer resolves every other.")
        for name in NAMES:
            self.js(name, "discover", "publish", "--dht")
        count = 0
        for name in NAMES:
            for other in NAMES:
                if other == name:
                    continue
                got = self.js(name, "discover", "resolve", self.p[other].did)
                presence = got.get("presence") or {}
                expect(presence.get("did") == self.p[other].did, f"{name} resolved {other} to {presence.get('did')}")
                count += 1
        return f"{count} resolutions, each a verified presence@2"

    def step_federation(self) -> str:
        self.say("Everyone federates with everyone, then refreshes with --mirror.")
        self.harness.federate_all([self.p[name] for name in NAMES])
        roots = 0
        for name in NAMES:
            result = self.js(name, "mcp", "federate", "refresh", "--mirror")
            for peer in result["peers"]:
                expect(peer.get("ok") is True, f"{name}: refresh of {peer.get('did')} failed: {peer.get('error')}")
                roots += 1
        listing = self.js("carol", "mcp", "federate", "list")
        for peer in listing["peers"]:
            expect(peer["health"] == "ok", f"carol sees {peer['did']} as {peer['health']}")
        return f"{roots} peer indices verified; recomputed roots equal the presences' roots"

    def step_shard(self) -> str:
        self.say("Bob seals his note for carol; carol's node mirrors it and she opens it.")
        carol = self.p["carol"]
        made = self.js("bob", "doc", "share", self.docs["bob"], "--to", carol.did)
        self.shard_id = made["id"]
        self.js("carol", "mcp", "federate", "refresh", "--mirror")
        out = carol.home.parent / "carol-got-bob-note.md"
        opened = self.js("carol", "doc", "open", self.shard_id, "--out", str(out))
        expect(opened["doc_digest"] == self.docs["bob"], "opened shard does not match bob's document")
        expect(out.read_text().startswith("# bob's note"), "opened document has other content")
        return f"shard {self.shard_id[:12]}… opened by carol, digest matches"

    def step_relay(self) -> str:
        self.say(f"Bob registers alice as his relay and pushes; his node is switched off, and {self.relay_ttl} s "
                 "later the relay forgets him; a push from his laptop puts him back.")
        alice, bob = self.p["alice"], self.p["bob"]
        self.js("bob", "mcp", "relay", "register", alice.did, "--url", alice.url)
        self.js("bob", "mcp", "relay", "push")
        url = f"{alice.url}/relay/{bob.did}/presence"
        status, _ = http_status(url)
        expect(status == 200, f"relay answered {status} after push")
        # A running node pushes again before the relay's TTL runs out: only once it is off
        # does the relayed presence expire.
        self.harness.stop_node(bob)
        deadline = time.monotonic() + self.relay_ttl + 10
        while time.monotonic() < deadline:
            status, _ = http_status(url)
            if status == 404:
                break
            time.sleep(0.5)
        expect(status == 404, "relayed presence did not expire")
        self.js("bob", "mcp", "relay", "push")
        status, _ = http_status(url)
        expect(status == 200, f"relay answered {status} after re-push")
        return "push -> 200, TTL expiry -> 404, re-push -> 200"

    def step_offline(self) -> str:
        self.say("Bob's node is off; carol still finds him and reads his index through alice.")
        bob = self.p["bob"]
        self.harness.stop_node(bob)  # off since the relay step already
        # Pushed again from his laptop: the relay keeps him for its whole TTL from now, not
        # only for what is left of the last push's, however slow this machine is.
        self.js("bob", "mcp", "relay", "push")
        resolved = self.js("carol", "discover", "resolve", bob.did)
        expect((resolved.get("presence") or {}).get("did") == bob.did, "bob not resolvable while offline")
        refreshed = self.js("carol", "mcp", "federate", "refresh")
        row = next(p for p in refreshed["peers"] if p["did"] == bob.did)
        expect(row.get("ok") is True, f"bob's index not fetchable via relay: {row.get('error')}")
        return f"resolved via {resolved.get('source')}, index via {row.get('source')}"

    def step_trust(self) -> str:
        self.say("Carol derives a trust link to bob from the shard he sent her and exposes her aggregate.")
        bob, carol = self.p["bob"], self.p["carol"]
        link = self.js("carol", "trust", "link", "derive", "--to", bob.did)
        rep = self.js("carol", "trust", "reputation", "compute", "--target", bob.did)
        self.hn("carol", "policy", "set", "trust.exposure", "allow", "--target", "*")
        self.js("carol", "trust", "publish", "--target", bob.did)
        status, body = http_status(f"{carol.url}/trust/{bob.did}")
        expect(status == 200, f"/trust answered {status} with exposure allowed")
        doc = json.loads(body)
        expect(doc.get("type") == "reputation@1", "/trust did not return a reputation@1")
        self.hn("carol", "policy", "set", "trust.exposure", "deny", "--target", "*")
        status, _ = http_status(f"{carol.url}/trust/{bob.did}")
        expect(status == 403, f"/trust answered {status} with exposure denied")
        return f"confidence {link.get('confidence')}, aggregate {rep.get('aggregate', rep)}; exposure allow/deny honoured"

    def step_backup(self) -> str:
        self.say("Bob backs up to alice, loses his machine, recovers his keys from 3 of 5 shares and restores.")
        alice, bob = self.p["alice"], self.p["bob"]
        split = self.js("bob", "id", "recovery", "split", "--threshold", "3", "--shares", "5")
        self.shares = split["shares"]
        made = self.js("bob", "vault", "backup", "create", "--push-url", alice.url, "--target", alice.did)
        self.backup = made
        digests_before = tree_digests(bob.home)
        # The push is logged after the snapshot it records: the restored log ends just before it.
        pushed = max((k for k in digests_before if k.startswith("events/")), default="")
        expect(bool(pushed) and json.loads((bob.home / pushed).read_bytes()).get("kind") == "backup.push",
               "the push of the backup is not the last event of bob's log")
        del digests_before[pushed]
        before = self.js("bob", "vault", "status")
        shutil.rmtree(bob.home)
        bob.home.mkdir()
        restored_id = self.js("bob", "id", "recovery", "restore", "--alias", "bob",
                              input="\n".join([self.shares[0], self.shares[2], self.shares[4]]) + "\n")
        expect(restored_id["did"] == bob.did, "recovered identity has another DID")
        restored = self.js("bob", "vault", "backup", "restore", "--from", alice.url, "--id", made["id"],
                           "--into", str(bob.home))
        expect(restored.get("merkle_root") == made.get("merkle_root"), "backup Merkle root differs after restore")
        digests_after = tree_digests(bob.home)
        changed = sorted(k for k in digests_before if digests_after.get(k) != digests_before[k])
        expect(not changed, f"{len(changed)} files differ after restore, e.g. {changed[:3]}")
        after = self.js("bob", "vault", "status")
        expect(after["index"]["root"] == before["index"]["root"], "index root differs after restore")
        verify = self.js("bob", "vault", "verify")
        expect(verify["ok"] is True, "hn vault verify failed after restore")
        return (f"backup {made['id'][:12]}… restored from alice; Merkle root and {len(digests_before)} file "
                "digests identical; vault verify ok")

    # -- running ----------------------------------------------------------------------
    def run(self, on_result: Callable[[StepResult], None]) -> dict[str, Any]:
        start = time.monotonic()
        self.h = Harness(keep=self.keep)
        try:
            results = run_steps([
                ("identities and documents", self.step_identities),
                ("four nodes with DHT", self.step_nodes),
                ("presence publish + DHT resolve", self.step_dht),
                ("federation roster + mirror refresh", self.step_federation),
                ("shard bob -> carol", self.step_shard),
                ("relay push, TTL expiry, re-push", self.step_relay),
                ("bob offline, reachable via alice", self.step_offline),
                ("trust link, reputation, exposure", self.step_trust),
                ("backup, loss, SLIP-39 recovery, restore", self.step_backup),
            ], on_result)
        finally:
            self.h.close()
        return {
            "ok": all(r.ok for r in results),
            "seconds": round(time.monotonic() - start, 2),
            "home": str(self.h.root) if self.keep else None,
            "steps": [{"step": r.name, "ok": r.ok, "seconds": round(r.seconds, 2), "detail": r.detail} for r in results],
        }


