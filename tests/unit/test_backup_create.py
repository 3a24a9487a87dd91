"""backup@1 creation: determinism, the delta chain and its change-detection cache, and vectors."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from hn.backup import create, payload, restore, snapshot, tarball
from hn.backup.restore import FileSource
from hn.errors import MalformedDocument
from hn.proto import backup as proto
from hn.proto.canonical import Splicer, canonical, loads_canonical
from hn.proto.signed import sign_document
from hn.vault.home import Home
from hn.vault.identities import Identity

ROOT = Path(__file__).resolve().parents[2]


def _fill(home: Home, n: int = 20) -> None:
    for i in range(n):
        (home.path("personal") / f"doc{i:03d}.txt").write_bytes(os.urandom(200) * (i + 1))


def _archive(home: Home, result: create.Result) -> bytes:
    key = payload.recipient_key(home, result.header)
    with open(result.payload_path, "rb") as src, payload.open_compressed(result.header, key, src) as plain:
        return zstandard.ZstdDecompressor().decompressobj().decompress(plain.read())


def test_same_state_same_manifest_and_archive(alice: Identity, home: Home, tmp_path: Path) -> None:
    _fill(home)
    (home.path("cache") / "skip.bin").write_bytes(b"cached")
    first = create.create(home, alice, tmp_path / "a")
    second = create.create(home, alice, tmp_path / "b")
    assert first.header["entries"] == second.header["entries"]
    assert first.header["merkle_root"] == second.header["merkle_root"]
    assert first.header["id"] != second.header["id"]  # fresh encapsulation each time
    assert _archive(home, first) == _archive(home, second)
    paths = [e["path"] for e in first.header["entries"]]
    assert not any(p.startswith(("cache/", "backups/")) for p in paths)
    assert paths == sorted(paths, key=lambda p: p.encode())
    secret = next(e for e in first.header["entries"] if e["path"].endswith("secret.json"))
    assert secret["mode"] == 0o600
    with_cache = create.create(home, alice, tmp_path / "c", include_cache=True)
    assert "cache/skip.bin" in [e["path"] for e in with_cache.header["entries"]]


def test_delta_reads_only_changed_files_and_restores_deletions(alice: Identity, home: Home, tmp_path: Path) -> None:
    _fill(home, 50)
    full = create.create(home, alice, tmp_path / "out")
    (home.path("personal") / "doc000.txt").write_bytes(b"changed")
    (home.path("personal") / "doc001.txt").unlink()
    (home.path("personal") / "new.txt").write_bytes(b"new")
    delta = create.create(home, alice, tmp_path / "out", base=full.header)
    stored = sorted(e["path"] for e in delta.header["entries"] if e["stored"])
    assert stored == ["personal/doc000.txt", "personal/new.txt"]
    assert delta.read_files == 2  # the cache answered for every unchanged file
    target = tmp_path / "restored"
    out = restore.restore(FileSource(tmp_path / "out"), delta.header["id"], home, target)
    assert out.chain == [full.header["id"], delta.header["id"]]
    assert not (target / "personal" / "doc001.txt").exists()
    assert (target / "personal" / "doc000.txt").read_bytes() == b"changed"
    for e in delta.header["entries"]:
        assert (target / e["path"]).stat().st_size == e["size"]


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'{"version": 1, "files": {}}', b'{"version": 2}', b'{"version": 2, "files": {}}',
    b'{"version": 2, "files": ["a", "b"]}', b'{"version": 2, "files": [[], 1, 2, 3, 4, "d"]}',
])
def test_a_damaged_or_old_cache_means_reading_every_file(body: bytes, alice: Identity, home: Home,
                                                          tmp_path: Path) -> None:
    _fill(home, 4)
    full = create.create(home, alice, tmp_path / "out")
    home.path(*snapshot.CACHE).write_bytes(body)
    delta = create.create(home, alice, tmp_path / "out", base=full.header)
    assert delta.read_files == len(delta.header["entries"])
    assert [e["digest"] for e in delta.header["entries"]] == [e["digest"] for e in full.header["entries"]]
    # The delta wrote a good cache again: the next one reads nothing.
    assert create.create(home, alice, tmp_path / "out", base=delta.header).read_files == 0


def test_a_cached_digest_is_trusted_only_for_the_same_stat_and_a_hex_digest(
        alice: Identity, home: Home, tmp_path: Path) -> None:
    _fill(home, 4)
    full = create.create(home, alice, tmp_path / "out")
    cache = home.path(*snapshot.CACHE)
    good = json.loads(cache.read_bytes())
    digest = good["files"][5]
    assert len(snapshot.load_cache(home)) == len(good["files"]) // snapshot.ROW
    # One digest that is not 64 lowercase hex characters, and the file is no cache at all.
    for bad in ("Z" * 64, "A" + digest[1:], digest[:63], digest + "0", 7, None):
        rows = list(good["files"])
        rows[5] = bad
        cache.write_text(json.dumps({"version": snapshot.CACHE_VERSION, "files": rows}))
        assert snapshot.load_cache(home) == {}, bad
    # A file whose stat key moved is read again, though its bytes are the same.
    cache.write_text(json.dumps(good))
    touched = home.path("personal") / "doc001.txt"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 1))
    delta = create.create(home, alice, tmp_path / "out", base=full.header)
    assert delta.read_files == 1
    assert [e["path"] for e in delta.header["entries"] if e["stored"]] == ["personal/doc001.txt"]


def test_cache_is_rewritten_only_when_something_changed(alice: Identity, home: Home, tmp_path: Path) -> None:
    _fill(home, 4)
    full = create.create(home, alice, tmp_path / "out")
    cache = home.path(*snapshot.CACHE)
    before = cache.stat().st_ino
    same = create.create(home, alice, tmp_path / "out", base=full.header)
    assert same.read_files == 0 and cache.stat().st_ino == before  # not even rewritten
    (home.path("personal") / "doc001.txt").unlink()
    gone = create.create(home, alice, tmp_path / "out", base=same.header)
    assert gone.read_files == 0 and "personal/doc001.txt" not in snapshot.load_cache(home)
    assert sorted(snapshot.load_cache(home)) == sorted(e["path"] for e in gone.header["entries"])
    # A new file only: it is read once, and the cache learns it, so the next delta reads nothing.
    (home.path("personal") / "new.txt").write_bytes(b"new")
    added = create.create(home, alice, tmp_path / "out", base=gone.header)
    assert added.read_files == 1 and "personal/new.txt" in snapshot.load_cache(home)
    assert create.create(home, alice, tmp_path / "out", base=added.header).read_files == 0
    # A SQLite database is stored by every backup and never cached; it alone does not
    # make the cache stale.
    db = sqlite3.connect(home.path("personal") / "notes.sqlite3")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with_db = create.create(home, alice, tmp_path / "out", base=added.header)
    assert with_db.read_files == 1 and "personal/notes.sqlite3" not in snapshot.load_cache(home)
    settled = cache.stat().st_ino
    again = create.create(home, alice, tmp_path / "out", base=with_db.header)
    assert again.read_files == 1 and cache.stat().st_ino == settled


def test_cache_is_not_trusted_after_a_change(alice: Identity, home: Home, tmp_path: Path) -> None:
    _fill(home, 3)
    full = create.create(home, alice, tmp_path / "out")
    path = home.path("personal") / "doc002.txt"
    stat = path.stat()
    path.write_bytes(b"x" * stat.st_size)  # same size; mtime/ctime move
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime, ctime differs
    delta = create.create(home, alice, tmp_path / "out", base=full.header)
    assert [e["path"] for e in delta.header["entries"] if e["stored"]] == ["personal/doc002.txt"]
    assert snapshot.load_cache(home)["personal/doc002.txt"][1] == next(
        e["digest"] for e in delta.header["entries"] if e["path"] == "personal/doc002.txt")


@pytest.mark.skipif(not (shutil.which("tar") and shutil.which("zstd")), reason="GNU tar and zstd not installed")
def test_decrypted_payload_extracts_with_gnu_tar(alice: Identity, home: Home, tmp_path: Path) -> None:
    _fill(home, 5)
    result = create.create(home, alice, tmp_path / "out")
    plain = tmp_path / "plain.tar.zst"
    key = payload.recipient_key(home, result.header)
    with open(result.payload_path, "rb") as src, open(plain, "wb") as dst, \
            payload.open_compressed(result.header, key, src) as stream:
        dst.write(stream.read())
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(f"zstd -dc {plain} | tar -x -C {out}", shell=True, check=True)
    for e in result.header["entries"]:
        assert (out / e["path"]).read_bytes() == (home.root / e["path"]).read_bytes()


def test_vectors() -> None:
    vectors = json.loads((ROOT / "spec" / "vectors" / "backup@1.json").read_text())
    for case in vectors["merkle"]:
        assert proto.merkle_root(case["entries"]) == case["root"]
    header = loads_canonical(json.dumps(vectors["header"], sort_keys=True, separators=(",", ":")).encode())
    assert proto.compute_id(header) == header["id"] == vectors["id"]
    history = proto.verify_header(header)
    assert history.did == header["owner"]
    assert proto.payload_aad(header).hex() == vectors["payload_aad"]
    from hn.backup import tarball
    for case in vectors["ustar"]:
        raw = tarball.member_header(case["path"], case["size"], int(case["mode"], 8), case["directory"])
        assert raw.hex() == case["header_hex"]


def test_vector_payload_decrypts_to_its_archive() -> None:
    import io

    from hn.proto.keys import IdentityKeys

    vectors = json.loads((ROOT / "spec" / "vectors" / "backup@1.json").read_text())
    header = vectors["header"]
    keys = IdentityKeys(bytes.fromhex(vectors["identity_secret_hex"]), 0)
    private = bytes(keys.hpke_keypair(0).private_key.to_private_bytes())
    with payload.open_archive(header, private, io.BytesIO(bytes.fromhex(vectors["payload_hex"]))) as archive:
        data = b"".join(iter(lambda: archive.read(65536), b""))
    assert data == bytes.fromhex(vectors["archive_hex"])


@settings(max_examples=300, deadline=None)
@given(name=st.binary(min_size=0, max_size=100), size=st.integers(0, tarball.MAX_OCTAL_SIZE),
       mode=st.sampled_from([0o600, 0o644, 0o700, 0o755]), typeflag=st.sampled_from([b"0", b"5"]))
def test_fast_tar_header_equals_the_field_by_field_one(name: bytes, size: int, mode: int, typeflag: bytes) -> None:
    assert tarball._fast_header(name, size, mode, typeflag) == tarball._header(name, size, mode, typeflag)


def test_sealed_header_bytes_equal_plain_canonical(alice: Identity, home: Home, tmp_path: Path) -> None:
    _fill(home, 5)
    result = create.create(home, alice, tmp_path / "out")
    raw = result.header_path.read_bytes()
    header = loads_canonical(raw)
    assert canonical(header) == raw
    body = {k: v for k, v in header.items() if k not in ("signer", "key_seq", "signature")}
    assert sign_document({**body, "id": proto.compute_id(body)}, alice.keys) == header
    # A field that happens to hold the placeholder cannot be confused with the entries.
    splice = Splicer("entries", header["entries"])
    with pytest.raises(MalformedDocument):
        splice({**header, "target": splice.token})


def test_latest_is_the_last_made_even_within_one_second(alice: Identity, home: Home, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from hn.backup import local
    from hn.proto import timefmt

    monkeypatch.setattr(timefmt, "now_iso", lambda: "2026-01-01T00:00:00Z")
    made = []
    for i in range(4):
        _fill(home, i + 1)
        result = create.create(home, alice, tmp_path / "out")
        local.record_created(home, result)
        made.append(result.header["id"])
    assert local.find(home, "latest")["id"] == made[-1]
    assert [r["id"] for r in local.records(home)] == made


@settings(max_examples=40, deadline=None)
@given(blocks=st.lists(st.binary(max_size=3000), max_size=12), piece=st.integers(1, 700),
       reads=st.lists(st.integers(-1, 900), min_size=1, max_size=30))
def test_compressed_reader_hands_out_exactly_the_compressed_stream(blocks: list[bytes], piece: int,
                                                                     reads: list[int]) -> None:
    # Pieces are passed through whole when a read asks for one, sliced otherwise: either
    # way the bytes read, in order, are the whole zstd stream of the blocks.
    reader = create._CompressedReader(iter(blocks), 0, piece)
    out = b""
    for n in reads:
        got = reader.read(n)
        assert n < 0 or len(got) <= n
        out += got
    out += reader.read()
    assert reader.read() == b"" and reader.read(5) == b""
    assert reader.compressed_size == len(out)
    assert reader.archive_size == sum(map(len, blocks))
    assert zstandard.ZstdDecompressor().decompressobj().decompress(out) == b"".join(blocks)
