"""The node's backup routes over real HTTP (an in-process node on 127.0.0.1, real signatures):
restartable uploads, digest check before keeping, quota, signer checks, retention."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hn.backup import client, create
from hn.errors import DiskError, HnError, NetworkError
from hn.node.httpsig import sign_request
from hn.proto.canonical import canonical
from hn.vault import atomic, identities, policy
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.support import make_person, start_node

pytestmark = pytest.mark.timeout(120)


def no_temp(*args: Any, **kwargs: Any) -> Any:
    """A temp file that cannot be made: the disk is full."""
    raise OSError(errno.ENOSPC, "No space left on device")


def _backup(home: Home, me: Identity, out: Path, size: int = 300_000, base: dict | None = None) -> create.Result:
    (home.path("personal") / f"blob-{os.urandom(4).hex()}").write_bytes(os.urandom(size))
    return create.create(home, me, out, base=base, chunk_size=64 * 1024)


async def push_dropped_after_one_segment(monkeypatch: pytest.MonkeyPatch, keys: Any, url: str,
                                          result: create.Result) -> None:
    """Push ``result`` in 1 MiB segments over a connection that drops during the second
    one; the upload is left part-way, and later pushes go through as usual."""
    monkeypatch.setattr(client, "SEGMENT", 1 << 20)
    calls = {"n": 0}
    real = client._signed

    async def flaky(session, keys, method, u, body):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if method == "PUT" and calls["n"] == 3:
            raise NetworkError("connection dropped")
        return await real(session, keys, method, u, body)

    monkeypatch.setattr(client, "_signed", flaky)
    try:
        with pytest.raises(NetworkError):
            await client.push(keys, url, result.header, result.payload_path)
    finally:
        monkeypatch.setattr(client, "_signed", real)


async def test_upload_is_restartable_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bob_home, bob = make_person(tmp_path, "bob")
    alice_home, alice = make_person(tmp_path, "alice")
    mallory_home, mallory = make_person(tmp_path, "mallory")
    for other in (alice, mallory):
        identities.import_contact(bob_home, canonical(other.doc))
    node, url = await start_node(bob_home, mirror=False)
    try:
        result = _backup(alice_home, alice, tmp_path / "out", 3 << 20)
        # First attempt dies after one segment (the connection drops): nothing is kept yet.
        await push_dropped_after_one_segment(monkeypatch, alice.keys, url, result)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/backup/{result.header['id']}") as resp:
                assert resp.status == 404
        # The retry resumes at the byte the node holds, and completes.
        sent: list[int] = []
        status = await client.push(alice.keys, url, result.header, result.payload_path, sent.append)
        assert status["complete"] and sent[0] == 1 << 20
        header = await client.fetch_header(url, result.header["id"])
        assert header == result.header

        # Someone else cannot upload alice's backup, nor upload under a header they did not sign.
        with pytest.raises(HnError, match="401"):
            await client.push(mallory.keys, url, result.header, result.payload_path)
        # A payload that does not match the signed digest is discarded.
        other = _backup(alice_home, alice, tmp_path / "out2", 100_000)
        broken = tmp_path / "broken.payload"
        data = bytearray(other.payload_path.read_bytes())
        data[-1] ^= 1
        broken.write_bytes(bytes(data))
        with pytest.raises(NetworkError, match="does not match"):
            await client.push(alice.keys, url, other.header, broken)
        assert not list((bob_home.path("hosted", "backups")).rglob(f"{other.header['id']}*"))
        # An unsigned upload is refused with a JSON 401.
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/backup", data=canonical(other.header)) as resp:
                assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    finally:
        await node.stop()


async def test_a_full_disk_while_fetching_a_payload_is_this_machine_s_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bob_home, _ = make_person(tmp_path, "bob")
    alice_home, alice = make_person(tmp_path, "alice")
    identities.import_contact(bob_home, canonical(alice.doc))
    node, url = await start_node(bob_home, mirror=False)
    try:
        result = _backup(alice_home, alice, tmp_path / "out")
        await client.push(alice.keys, url, result.header, result.payload_path)
        real = atomic.atomic_writer

        class FullDisk:
            def write(self, data: bytes) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

        @contextlib.contextmanager
        def full(path: Path, **kwargs: Any) -> Iterator[FullDisk]:
            with real(path, **kwargs):
                yield FullDisk()

        scratch = tmp_path / "scratch"
        scratch.mkdir()
        # The disk refuses the data...
        with monkeypatch.context() as patched:
            patched.setattr(client.atomic, "atomic_writer", full)
            with pytest.raises(DiskError, match=rf"could not store the payload of backup {result.header['id']} "
                                                rf"in {scratch}: No space left on device"):
                await client.fetch_payload(url, result.header, scratch / "payload")
        assert not list(scratch.iterdir())

        # ... or the temp file itself, which is made while the response is open.
        with monkeypatch.context() as patched:
            patched.setattr(atomic.tempfile, "mkstemp", no_temp)
            with pytest.raises(DiskError, match="disk full while writing .*payload"):
                await client.fetch_payload(url, result.header, scratch / "payload")
        assert not list(scratch.iterdir())
    finally:
        await node.stop()


async def test_a_node_with_a_full_disk_answers_507_and_the_upload_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The friend's node runs out of room: it answers a JSON 507 (its fault, not the
    request's), never a 500 or a 400, and once it has room the upload goes on from the
    bytes it kept."""
    from hn.backup import hosted

    bob_home, _ = make_person(tmp_path, "bob")
    alice_home, alice = make_person(tmp_path, "alice")
    identities.import_contact(bob_home, canonical(alice.doc))
    node, url = await start_node(bob_home, mirror=False)
    monkeypatch.setattr(client, "SEGMENT", 1 << 20)
    try:
        result = _backup(alice_home, alice, tmp_path / "out", 3 << 20)

        # The pending header cannot be written (an hn atomic write: a DiskError).
        with monkeypatch.context() as patched:
            patched.setattr(atomic.tempfile, "mkstemp", no_temp)
            with pytest.raises(NetworkError, match="HTTP 507 insufficient_storage: this node could not use its storage; "
                                                   "try again later"):
                await client.push(alice.keys, url, result.header, result.payload_path)

        # The second segment fills the disk half way (a plain OSError from the file).
        segments = {"n": 0}
        real_open = open

        class FillsUp:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def write(self, data: bytes) -> int:
                segments["n"] += 1
                if segments["n"] == 2:
                    self.inner.write(data[: len(data) // 2])
                    self.inner.flush()
                    raise OSError(errno.ENOSPC, "No space left on device")
                return int(self.inner.write(data))

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

            def __enter__(self) -> FillsUp:
                return self

            def __exit__(self, *exc: object) -> None:
                self.inner.close()

        def filling(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(path, mode, *args, **kwargs)
            return FillsUp(handle) if mode == "ab" else handle

        with monkeypatch.context() as patched:
            patched.setattr(hosted, "open", filling, raising=False)
            with pytest.raises(NetworkError, match="HTTP 507 insufficient_storage"):
                await client.push(alice.keys, url, result.header, result.payload_path)
        partial = next(bob_home.path("hosted", "backups").rglob("*.partial"))
        assert partial.stat().st_size == (1 << 20) + (1 << 19)  # one segment and the half that fit

        # With room again, the same push resumes at the bytes kept and commits.
        sent: list[int] = []
        status = await client.push(alice.keys, url, result.header, result.payload_path, sent.append)
        assert status["complete"] and sent[0] == (1 << 20) + (1 << 19)
        assert await client.fetch_header(url, result.header["id"]) == result.header
    finally:
        await node.stop()


async def test_quota_target_and_retention(tmp_path: Path) -> None:
    bob_home, bob = make_person(tmp_path, "bob")
    alice_home, alice = make_person(tmp_path, "alice")
    identities.import_contact(bob_home, canonical(alice.doc))
    node, url = await start_node(bob_home, backup_keep_last=2, backup_quota=3 << 20, mirror=False)
    try:
        full = _backup(alice_home, alice, tmp_path / "out", 200_000)
        await client.push(alice.keys, url, full.header, full.payload_path)
        deltas = []
        base = full.header
        for _ in range(3):
            d = _backup(alice_home, alice, tmp_path / "out", 50_000, base=base)
            await client.push(alice.keys, url, d.header, d.payload_path)
            deltas.append(d)
            base = d.header
        kept = [b["id"] for b in await client.listing(url, alice.did)]
        # keep-last-2 keeps the two newest deltas and the chain they need down to the full backup.
        assert sorted(kept) == sorted([full.header["id"]] + [d.header["id"] for d in deltas])
        # A fresh full backup lets the old chain go.
        new_full = _backup(alice_home, alice, tmp_path / "out", 10_000)
        await client.push(alice.keys, url, new_full.header, new_full.payload_path)
        last = _backup(alice_home, alice, tmp_path / "out", 10_000, base=new_full.header)
        await client.push(alice.keys, url, last.header, last.payload_path)
        assert [b["id"] for b in await client.listing(url, alice.did)] == [new_full.header["id"], last.header["id"]]
        # Over quota: 413 before any byte of the payload is sent.
        big = _backup(alice_home, alice, tmp_path / "big", 4 << 20)
        with pytest.raises(NetworkError, match="413"):
            await client.push(alice.keys, url, big.header, big.payload_path)
        # Meant for another node: refused.
        other = create.create(alice_home, alice, tmp_path / "t", target=alice.did)
        with pytest.raises(NetworkError, match="403"):
            await client.push(alice.keys, url, other.header, other.payload_path)
        # The signed upload request cannot be replayed.
        body = canonical(last.header)
        headers = sign_request(alice.keys, "POST", f"{url}/backup", body)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/backup", data=body, headers=headers) as resp:
                assert resp.status == 200
            async with session.post(f"{url}/backup", data=body, headers=headers) as resp:
                assert resp.status == 401
    finally:
        await node.stop()


async def test_owner_policies_decide_who_stores_and_how_much(tmp_path: Path) -> None:
    bob_home, bob = make_person(tmp_path, "bob")
    alice_home, alice = make_person(tmp_path, "alice")
    carol_home, carol = make_person(tmp_path, "carol")
    stranger_home, stranger = make_person(tmp_path, "stranger")
    for friend in (alice, carol):
        identities.import_contact(bob_home, canonical(friend.doc))
    # The node's own configuration says keep 5 and 64 MiB; bob's policies override it.
    node, url = await start_node(bob_home, backup_keep_last=5, backup_quota=64 << 20, mirror=False)
    try:
        # backup.accept defaults to friends: carol (a contact) may store, a stranger may not.
        # (The stranger's request cannot even be verified: bob has no key history for them.)
        first = _backup(carol_home, carol, tmp_path / "c", 50_000)
        assert (await client.push(carol.keys, url, first.header, first.payload_path))["complete"]
        lone = _backup(stranger_home, stranger, tmp_path / "s", 50_000)
        with pytest.raises(HnError, match="401"):
            await client.push(stranger.keys, url, lone.header, lone.payload_path)
        # Denied for carol by name: refused with the policy's reason, nothing kept.
        policy.set_policy(bob_home, "backup.accept", "deny", target=carol.did)
        second = _backup(carol_home, carol, tmp_path / "c", 50_000, base=first.header)
        with pytest.raises(NetworkError, match="403.*backup.accept"):
            await client.push(carol.keys, url, second.header, second.payload_path)
        assert [b["id"] for b in await client.listing(url, carol.did)] == [first.header["id"]]

        # A per-owner quota below the node's: alice's 2 MiB backup no longer fits.
        policy.set_policy(bob_home, "backup.quota_bytes", str(1 << 20), target=alice.did)
        big = _backup(alice_home, alice, tmp_path / "a", 2 << 20)
        with pytest.raises(NetworkError, match="413"):
            await client.push(alice.keys, url, big.header, big.payload_path)
        # A per-owner retention of 1: each new full backup replaces the last.
        policy.set_policy(bob_home, "backup.quota_bytes", str(64 << 20), target=alice.did)
        policy.set_policy(bob_home, "backup.retention", "1", target=alice.did)
        ids = []
        for _ in range(3):
            made = _backup(alice_home, alice, tmp_path / "a", 20_000)
            await client.push(alice.keys, url, made.header, made.payload_path)
            ids.append(made.header["id"])
        assert [b["id"] for b in await client.listing(url, alice.did)] == ids[-1:]
    finally:
        await node.stop()


async def test_after_a_key_rotation_the_refusal_says_what_to_do(tmp_path: Path) -> None:
    bob_home, bob = make_person(tmp_path, "bob")
    alice_home, alice = make_person(tmp_path, "alice")
    identities.import_contact(bob_home, canonical(alice.doc))
    node, url = await start_node(bob_home, mirror=False)
    try:
        first = _backup(alice_home, alice, tmp_path / "a", 20_000)
        await client.push(alice.keys, url, first.header, first.payload_path)
        rotated = identities.rotate(alice_home)
        second = _backup(alice_home, rotated, tmp_path / "a", 20_000, base=first.header)
        # A key the node has not seen is not taken from the request itself (whoever stole
        # the old key could offer a rotation of their own); the refusal names the way out.
        with pytest.raises(HnError, match=r"401.*key 0 of .*hn id import"):
            await client.push(rotated.keys, url, second.header, second.payload_path)
        assert len(identities.known_history(bob_home, alice.did).keys) == 1  # type: ignore[union-attr]
        identities.import_contact(bob_home, canonical(rotated.doc))
        assert (await client.push(rotated.keys, url, second.header, second.payload_path))["complete"]
        with pytest.raises(HnError, match="401"):  # the old key is refused from then on
            await client.push(alice.keys, url, first.header, first.payload_path)
    finally:
        await node.stop()


async def test_a_friend_who_federates_learns_a_rotated_key_from_its_owner_node(tmp_path: Path) -> None:
    """The path that needs no export: bob's node syncs alice's index from alice's own node,
    sees a presence signed by a key it does not hold, and pins the history alice's node
    serves (each key signed by the one before). Then alice's uploads are accepted again."""
    from hn.federation import service

    bob_home, bob = make_person(tmp_path, "bob")
    alice_home, alice = make_person(tmp_path, "alice")
    alice_node, alice_url = await start_node(alice_home, mirror=False)
    bob_node, bob_url = await start_node(bob_home, mirror=False)
    try:
        await service.add(bob_home, alice.did, alice_url)  # pins alice's identity, key 0
        assert (await service.refresh(bob_home))[0]["ok"]
        rotated = identities.rotate(alice_home)
        made = _backup(alice_home, rotated, tmp_path / "a", 20_000)
        with pytest.raises(HnError, match="401.*key 0 of"):
            await client.push(rotated.keys, bob_url, made.header, made.payload_path)
        assert (await service.refresh(bob_home))[0]["ok"]  # bob's next sync with alice
        assert len(identities.known_history(bob_home, alice.did).keys) == 2  # type: ignore[union-attr]
        assert (await client.push(rotated.keys, bob_url, made.header, made.payload_path))["complete"]
    finally:
        await bob_node.stop()
        await alice_node.stop()


async def test_abandoned_uploads_and_headerless_payloads_stop_counting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload left half-way for a week, and a payload a stopped node left without its
    header, are removed at the next upload of that owner: the quota counts them no more."""
    bob_home, bob = make_person(tmp_path, "bob")
    alice_home, alice = make_person(tmp_path, "alice")
    identities.import_contact(bob_home, canonical(alice.doc))
    node, url = await start_node(bob_home, backup_quota=3 << 20, mirror=False)
    try:
        abandoned = _backup(alice_home, alice, tmp_path / "out", 2 << 20)
        await push_dropped_after_one_segment(monkeypatch, alice.keys, url, abandoned)
        folder = bob_home.path("hosted", "backups", alice.did.rsplit(":", 1)[1])
        held = sorted(p.name for p in folder.iterdir())
        assert held == sorted(f"{abandoned.header['id']}{s}" for s in (".partial", ".pending.json"))
        orphan = folder / f"{'0' * 32}.backup.payload"
        orphan.write_bytes(b"x" * (1 << 20))

        # While recent, both count: a 1.5 MiB backup would go over the 3 MiB quota.
        second = _backup(alice_home, alice, tmp_path / "out2", 1_500_000, base=abandoned.header)
        with pytest.raises(NetworkError, match="413"):
            await client.push(alice.keys, url, second.header, second.payload_path)
        week = 8 * 86400
        for path in folder.iterdir():
            os.utime(path, (path.stat().st_atime - week, path.stat().st_mtime - week))
        status = await client.push(alice.keys, url, second.header, second.payload_path)
        assert status["complete"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{second.header['id']}{s}" for s in (".backup.json", ".backup.payload"))
    finally:
        await node.stop()
