"""backup@1 restore safety: every refusal of THREATS.md 8-11 with a generated hostile case."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from hn.backup import create, payload, restore, tarball
from hn.backup.extract import READ_BLOCK
from hn.backup.payload import WrongRecipient
from hn.backup.restore import FileSource
from hn.backup.tarball import ArchiveError
from hn.errors import MalformedDocument, TooLarge, VerificationError
from hn.proto import backup as proto
from hn.proto.canonical import canonical, loads_canonical
from hn.proto.chunked import ChunkError
from hn.vault import atomic, identities
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.fixtures.backup.build import entry, member, seal, tar_bytes, zst


def _restore(home: Home, header_path: Path, into: Path | None, owner: str | None = None) -> restore.Outcome:
    backup_id = header_path.name.split(".")[0]
    return restore.restore(FileSource(header_path.parent), backup_id, home, into, expected_owner=owner)


def _hostile(alice: Identity, tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]],
             entries: list[dict]) -> Path:
    raw = tar_bytes(members)
    return seal(alice, tmp_path / "out", entries, zst(raw), len(raw))


@pytest.mark.parametrize("name,kind,mode,link", [
    ("evil", tarfile.SYMTYPE, 0o777, "/etc/passwd"),
    ("evil", tarfile.LNKTYPE, 0o644, "../../etc/passwd"),
    ("evil", tarfile.CHRTYPE, 0o644, ""),
    ("evil", tarfile.FIFOTYPE, 0o644, ""),
    ("evil", tarfile.REGTYPE, 0o4755, ""),
])
def test_links_devices_and_setuid_refused(alice: Identity, home: Home, tmp_path: Path, name: str, kind: bytes,
                                          mode: int, link: str) -> None:
    path = _hostile(alice, tmp_path, [member(name, b"", kind, mode, link)], [entry(name, b"")])
    target = tmp_path / "target"
    with pytest.raises(ArchiveError):
        _restore(home, path, target)
    assert not target.exists()
    assert not any(p.name.startswith(".target") for p in tmp_path.iterdir())


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside", "a/../../outside", "./a"])
def test_traversal_names_refused(alice: Identity, home: Home, tmp_path: Path, name: str) -> None:
    path = _hostile(alice, tmp_path, [member(name, b"x")], [entry("a", b"x")])
    with pytest.raises(ArchiveError, match="unsafe member path"):
        _restore(home, path, tmp_path / "target")
    assert not (tmp_path / "outside").exists()


def test_member_must_match_manifest(alice: Identity, home: Home, tmp_path: Path) -> None:
    extra = _hostile(alice, tmp_path, [member("a", b"x"), member("b", b"y")], [entry("a", b"x")])
    with pytest.raises(TooLarge):
        _restore(home, extra, None)
    swapped = _hostile(alice, tmp_path, [member("a", b"evil!")], [entry("a", b"good")])
    with pytest.raises(ArchiveError, match="bytes"):
        _restore(home, swapped, None)
    same_size = _hostile(alice, tmp_path, [member("a", b"evil")], [entry("a", b"good")])
    with pytest.raises(ArchiveError, match="digest"):
        _restore(home, same_size, None)


def test_manifest_paths_refused_before_decrypting() -> None:
    for bad in ("/abs", "a/../b", "", "a//b", "a\\b", "."):
        with pytest.raises(MalformedDocument):
            proto.check_path(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=120))
def test_any_accepted_name_stays_inside(name: str) -> None:
    try:
        path = proto.check_path(name)
    except MalformedDocument:
        return
    root = Path("/staging")
    assert os.path.normpath(root / path).startswith("/staging/")
    # What the writer emits, the reader reads back as the same path.
    raw = tarball.member_header(path, 0, 0o644) + tarball.END
    members = list(tarball.iter_members(io.BytesIO(raw), 1))
    assert members[0].path == path


def test_zstd_bomb_stops_at_declared_size(alice: Identity, home: Home, tmp_path: Path) -> None:
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    zeros = b"\x00" * (1 << 20)
    bomb = b"".join(cobj.compress(zeros) for _ in range(1024)) + cobj.flush()  # 1 GiB of zeros
    assert len(bomb) < 64 * 1024
    # An empty manifest: the archive is its end marker, and the rest must stop at 2048 bytes.
    path = seal(alice, tmp_path / "out", [], bomb, 2048)
    with pytest.raises(TooLarge, match="declared size"):
        _restore(home, path, None)


def test_million_empty_entries_stop_at_manifest_count(alice: Identity, home: Home, tmp_path: Path) -> None:
    one = tarball.member_header("a", 0, 0o644)
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    block = one * 1000
    packed = b"".join(cobj.compress(block) for _ in range(1000)) + cobj.flush()
    path = seal(alice, tmp_path / "out", [entry("a", b"")], packed, 512 * 1_000_000 + 1024)
    with pytest.raises(TooLarge, match="more members"):
        _restore(home, path, None)


def _real_backup(home: Home, me: Identity, tmp_path: Path, chunk: int = 1024) -> create.Result:
    for i in range(8):
        (home.path("personal") / f"file{i}").write_bytes(os.urandom(3000))
    return create.create(home, me, tmp_path / "out", chunk_size=chunk)


def _frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        out.append(data[pos:pos + 4 + length])
        pos += 4 + length
    return out


@pytest.mark.parametrize("damage,message", [
    (lambda f: f[:-1], "truncated"),
    (lambda f: [f[1], f[0], *f[2:]], "reordered"),
    (lambda f: [f[0], f[0], *f[1:]], "duplicates"),
    (lambda f: [*f, b"\x00\x00\x00\x10" + b"x" * 16], "trailing data"),
])
def test_damaged_chunks_refused(alice: Identity, home: Home, tmp_path: Path, damage, message: str) -> None:
    result = _real_backup(home, alice, tmp_path)
    frames = _frames(result.payload_path.read_bytes())
    assert len(frames) > 3
    result.payload_path.write_bytes(b"".join(damage(frames)))
    with pytest.raises(ChunkError, match=message):
        _restore(home, result.header_path, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_wrong_recipient_names_the_key(alice: Identity, home: Home, tmp_path: Path) -> None:
    result = _real_backup(home, alice, tmp_path)
    other = Home(tmp_path / "other")
    other.ensure()
    identities.create(other, "bob")
    with pytest.raises(WrongRecipient, match=f"key 0 .*of {alice.did}"):
        _restore(other, result.header_path, None, owner=alice.did)


def test_forged_or_substituted_backup_refused(alice: Identity, home: Home, tmp_path: Path) -> None:
    result = _real_backup(home, alice, tmp_path)
    # Any change to the signed header breaks it.
    header = loads_canonical(result.header_path.read_bytes())
    header["entries"][0]["size"] += 1
    with pytest.raises(VerificationError):
        proto.verify_header(header)
    # Mallory seals a payload to alice's key under his own signature: alice refuses it.
    mallory_home = Home(tmp_path / "mallory")
    mallory_home.ensure()
    mallory = identities.create(mallory_home, "mallory")
    raw = tar_bytes([member("a", b"x")])
    forged = seal(mallory, tmp_path / "forged", [entry("a", b"x")], zst(raw), len(raw), recipient=alice)
    with pytest.raises(VerificationError, match="not an identity of this vault"):
        _restore(home, forged, None)
    with pytest.raises(VerificationError, match="belongs to"):
        _restore(home, forged, None, owner=alice.did)
    # Claiming alice as owner while mallory signs fails the signature check.
    forged_owner = seal(mallory, tmp_path / "forged2", [entry("a", b"x")], zst(raw), len(raw), recipient=alice,
                        owner=alice)
    with pytest.raises(VerificationError):
        _restore(home, forged_owner, None)


@pytest.mark.parametrize("size", [2**53, 2**64, -1, 1.0, True])
def test_entry_sizes_outside_json_integers_refused(size: object, alice: Identity, home: Home, tmp_path: Path) -> None:
    # Entries are encoded without a second walk once checked, so the check must hold the
    # line: a size JCS cannot encode as the stdlib does is refused, never signed over.
    header = loads_canonical(_real_backup(home, alice, tmp_path).header_path.read_bytes())
    header["entries"][0]["size"] = size
    with pytest.raises(MalformedDocument, match=r"entry 0: size must be a non-negative integer below 2\^53"):
        proto.verify_header(header)


def test_seal_refuses_a_file_too_large_for_a_header(alice: Identity, home: Home, tmp_path: Path) -> None:
    # seal does not walk the entries it encodes; the sizes, which come from the files, it checks.
    result = _real_backup(home, alice, tmp_path)
    header = {k: v for k, v in result.header.items() if k not in ("id", "signer", "key_seq", "signature")}
    header["entries"] = [{**e, "size": 2**53} if i == 1 else e for i, e in enumerate(header["entries"])]
    with pytest.raises(MalformedDocument, match=rf"{header['entries'][1]['path']} holds 2\^53 bytes or more"):
        proto.seal(header, alice.keys)
    header["entries"][1]["size"] = 2**53 - 1
    assert proto.seal(header, alice.keys)[0]["entries"][1]["size"] == 2**53 - 1


def test_payload_digest_is_checked_while_decrypting(alice: Identity, home: Home, tmp_path: Path) -> None:
    # Every chunk authenticates (the chunk AAD does not bind the digest), so only the
    # decrypting pass's own digest check can refuse this: it is what verify --deep relies on.
    result = _real_backup(home, alice, tmp_path)
    header = {k: v for k, v in result.header.items() if k not in ("id", "signer", "key_seq", "signature")}
    header["payload"] = {**header["payload"], "digest": "0" * 64}
    resealed, raw = proto.seal(header, alice.keys)
    folder = tmp_path / "resealed"
    folder.mkdir()
    (folder / f"{resealed['id']}.backup.json").write_bytes(raw)
    (folder / f"{resealed['id']}.backup.payload").write_bytes(result.payload_path.read_bytes())
    with pytest.raises(VerificationError, match="payload digest does not match"):
        restore.restore(FileSource(folder), resealed["id"], home, None)


def test_payload_swapped_between_backups_refused(alice: Identity, home: Home, tmp_path: Path) -> None:
    first = _real_backup(home, alice, tmp_path)
    second = create.create(home, alice, tmp_path / "out2", chunk_size=1024)
    second.payload_path.write_bytes(first.payload_path.read_bytes())
    with pytest.raises(VerificationError):
        _restore(home, second.header_path, None)


def test_header_must_be_canonical(alice: Identity, home: Home, tmp_path: Path) -> None:
    result = _real_backup(home, alice, tmp_path)
    raw = result.header_path.read_bytes()
    with pytest.raises(MalformedDocument):
        proto.parse_header(raw.replace(b'{"algorithm"', b'{ "algorithm"', 1))
    assert proto.parse_header(canonical(loads_canonical(raw)))["id"] == result.header["id"]


def test_reader_that_stops_early_stops_the_decrypting_thread(alice: Identity, home: Home, tmp_path: Path) -> None:
    for i in range(6):
        (home.path("personal") / f"big{i}.bin").write_bytes(os.urandom(5 << 20))
    result = create.create(home, alice, tmp_path / "out")
    key = payload.recipient_key(home, result.header)
    before = threading.active_count()
    with open(result.payload_path, "rb") as src, pytest.raises(ValueError, match="reader gave up"), \
            payload.open_compressed(result.header, key, src) as stream:
        assert stream.read(1 << 20)
        raise ValueError("reader gave up")
    # The worker was blocked on a full hand-over queue (30 MiB payload, 8 chunks of room)
    # and has ended; a reader that reads everything still gets every byte.
    assert threading.active_count() == before
    with open(result.payload_path, "rb") as src, payload.open_compressed(result.header, key, src) as stream:
        total = 0
        while block := stream.read(300_000):
            total += len(block)
    assert total == result.header["payload"]["compressed_size"]


@pytest.mark.parametrize("umask", [0o077, 0o022, 0o000])
def test_restored_modes_are_exact_whatever_the_umask(alice: Identity, home: Home, tmp_path: Path, umask: int) -> None:
    shared = home.path("personal") / "shared.txt"
    shared.write_bytes(b"readable by others")
    shared.chmod(0o644)
    private = home.path("personal") / "private.txt"
    private.write_bytes(b"owner only")
    private.chmod(0o600)
    # Larger than a read block: streamed to disk as it is hashed, not created in a batch.
    large = home.path("personal") / "large.bin"
    large.write_bytes(os.urandom(READ_BLOCK + 1))
    large.chmod(0o644)
    result = create.create(home, alice, tmp_path / "out")
    old = os.umask(umask)
    try:
        _restore(home, result.header_path, tmp_path / "restored")
    finally:
        os.umask(old)
    root = tmp_path / "restored"
    assert (root / "personal" / "shared.txt").stat().st_mode & 0o777 == 0o644
    assert (root / "personal" / "private.txt").stat().st_mode & 0o777 == 0o600
    assert (root / "personal" / "large.bin").stat().st_mode & 0o777 == 0o644
    assert (root / "identities").stat().st_mode & 0o777 == 0o700
    assert os.umask(old) == old  # the restore left the process umask as it found it


@given(st.binary(max_size=5000), st.lists(st.integers(min_value=0, max_value=700), max_size=40),
       st.integers(min_value=1, max_value=600))
def test_buffered_reads_give_exactly_the_bytes_asked_for(data: bytes, sizes: list[int], block: int) -> None:
    from hn.backup.tarball import Buffered

    class Trickle:
        """A source that hands out at most 97 bytes a call, like a stream would."""

        def __init__(self) -> None:
            self.pos = 0

        def read(self, n: int) -> bytes:
            out = data[self.pos:self.pos + min(n, 97)]
            self.pos += len(out)
            return out

    reader, pos = Buffered(Trickle(), block), 0
    for size in sizes:
        piece = reader.read(size)
        assert piece == data[pos:pos + size]
        pos += len(piece)
    assert reader.read() == data[pos:]
    assert reader.read(10) == b""


def test_early_sync_flushes_while_extracting_and_stops_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hn.backup import swap

    calls: list[int] = []
    flushed = threading.Event()

    def syncfs(fd: int) -> int:
        calls.append(fd)
        flushed.set()
        return 0

    monkeypatch.setattr(atomic, "syncfs", lambda: syncfs)
    before = len(os.listdir("/proc/self/fd"))
    early = swap.EarlySync(tmp_path, every=1000)
    early.wrote(999)
    assert not flushed.wait(0.2)  # below the step: nothing yet
    early.wrote(1)
    assert flushed.wait(5)
    early.stop()
    early.stop()  # twice is harmless
    assert len(calls) == 1
    assert len(os.listdir("/proc/self/fd")) == before
