"""Fork evidence in the node's state: both documents kept as received, within the caps."""

from __future__ import annotations

from pathlib import Path

import pytest

from hn.errors import ForkError
from hn.node import state as node_state
from hn.node.state import NodeState, SeqFork
from hn.proto.canonical import hexdigest
from hn.vault.home import Home

DID = "did:hn:" + "a" * 32


@pytest.fixture
def state(tmp_path: Path) -> NodeState:
    return NodeState(Home(tmp_path / "vault"))


def record(state: NodeState, seq: int, raw: bytes | None, doc: bytes) -> None:
    state.check_and_record_seq(DID, "presence@2", seq, hexdigest(doc), raw)


def test_a_document_first_seen_without_its_bytes_is_kept_when_it_comes_with_them(state: NodeState) -> None:
    accepted, other = b'{"seq":5,"url":"a"}', b'{"seq":5,"url":"b"}'
    record(state, 5, None, accepted)  # a federation sync records digests only
    record(state, 5, accepted, accepted)  # the same document, pushed to the relay
    with pytest.raises(SeqFork) as caught:
        record(state, 5, other, other)
    assert isinstance(caught.value, ForkError) and caught.value.evidence_problem is None
    assert sorted(p.read_bytes() for p in caught.value.evidence) == sorted([accepted, other])
    assert {p.parent for p in caught.value.evidence} == {state.fork_folder(DID)}
    assert {f["digest"] for f in state.forks()} == {hexdigest(accepted), hexdigest(other)}


def test_without_the_accepted_bytes_the_fork_says_so(state: NodeState) -> None:
    accepted, other = b'{"seq":1,"url":"a"}', b'{"seq":1,"url":"b"}'
    record(state, 1, accepted, accepted)
    record(state, 2, None, b'{"seq":2}')  # newer, without bytes: the kept one is of no use now
    record(state, 3, accepted, accepted)
    with pytest.raises(SeqFork):
        record(state, 3, other, other)
    third = b'{"seq":4,"x":1}'
    record(state, 4, None, third)
    with pytest.raises(SeqFork) as caught:
        record(state, 4, b'{"seq":4,"x":2}', b'{"seq":4,"x":2}')
    assert "was not kept when it was accepted" in (caught.value.evidence_problem or "")
    assert [p.read_bytes() for p in caught.value.evidence] == [b'{"seq":4,"x":2}']


def test_evidence_is_bounded(state: NodeState, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_state, "FORK_ROWS_PER_DID", 5)
    first = b'{"n":0}'
    record(state, 7, first, first)
    for n in range(1, 12):
        other = b'{"n":%d}' % n
        with pytest.raises(SeqFork):
            record(state, 7, other, other)
    files = list(state.fork_folder(DID).glob("*.json"))
    assert len(files) == node_state.FORK_FILES_PER_DID
    assert first in {p.read_bytes() for p in files}
    assert len(state.forks()) == 5
    big = b"x" * (node_state.FORK_DOC_MAX + 1)
    with pytest.raises(SeqFork) as caught:
        record(state, 7, big, big)
    assert "over" in (caught.value.evidence_problem or "")
