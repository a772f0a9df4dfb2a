"""Content store: ingest, resume, commit checks, labels, listing, deletion."""
from __future__ import annotations

import hashlib
import os

import pytest

from pallet.core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from pallet.imagestore.content import ContentStore, parse_digest


def dg(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def cs(tmp_path):
    s = ContentStore(str(tmp_path / "content"))
    yield s
    s.close()


def test_opening_creates_nothing(tmp_path):
    ContentStore(str(tmp_path / "content")).list()
    assert not (tmp_path / "content").exists()


def test_commit_places_blob_by_digest(cs, tmp_path):
    data = b"hello world\n" * 1000
    with cs.writer("ref-1", dg(data), len(data)) as w:
        w.write(data[:100])
        w.write(data[100:])
        assert w.status().offset == len(data)
        assert w.status().total == len(data)
        digest = w.commit(len(data), labels={"a": "b"})
    assert digest == dg(data)
    path = tmp_path / "content" / "blobs" / "sha256" / digest.split(":")[1]
    assert path.read_bytes() == data
    info = cs.info(digest)
    assert (info.size, info.labels) == (len(data), {"a": "b"})
    assert cs.read(digest, 6, 5) == b"world"
    assert b"".join(cs.read_chunks(digest, chunk_size=7)) == data
    assert b"".join(cs.read_chunks(digest, 1, 3)) == b"ell"
    assert cs.ingests() == []
    assert not os.listdir(tmp_path / "content" / "ingest")


def test_digest_mismatch_stores_nothing(cs, tmp_path):
    with cs.writer("bad", dg(b"expected")) as w:
        w.write(b"something else")
        with pytest.raises(InvalidArgument, match="unexpected digest"):
            w.commit()
    assert cs.list() == []
    assert not (tmp_path / "content" / "blobs" / "sha256").exists() or \
        not os.listdir(tmp_path / "content" / "blobs" / "sha256")
    # the ingest stays, to be restarted or aborted
    assert [s.ref for s in cs.ingests()] == ["bad"]
    cs.abort("bad")
    assert cs.ingests() == []
    with pytest.raises(NotFound):
        cs.abort("bad")


def test_size_mismatch_stores_nothing(cs):
    with cs.writer("short") as w:
        w.write(b"abc")
        with pytest.raises(InvalidArgument, match="unexpected size"):
            w.commit(4)
    assert cs.list() == []


def test_resume_after_interruption(cs):
    data = os.urandom(300_000)
    w = cs.writer("resume", dg(data), len(data))
    w.write(data[:123_456])
    w.close()  # the client went away
    st = cs.status("resume")
    assert (st.ref, st.offset, st.total, st.expected) == ("resume", 123_456, len(data), dg(data))
    with cs.writer("resume", dg(data), len(data)) as w:
        assert w.offset == 123_456
        w.write_at(data[123_456:], 123_456)
        assert w.commit(len(data)) == dg(data)
    assert cs.read(dg(data)) == data


def test_write_at_zero_restarts(cs):
    with cs.writer("restart") as w:
        w.write(b"garbage")
        w.write_at(b"good", 0)
        assert w.commit() == dg(b"good")


def test_ref_is_locked_while_open(cs):
    w = cs.writer("locked")
    try:
        with pytest.raises(Unavailable):
            cs.writer("locked")
        with pytest.raises(Unavailable):
            cs.abort("locked")
    finally:
        w.close()
    cs.writer("locked").close()


def test_existing_blob(cs):
    d = cs.write_blob(b"once")
    with pytest.raises(AlreadyExists):
        cs.writer("again", d.digest)
    with cs.writer("again2") as w:
        w.write(b"once")
        with pytest.raises(AlreadyExists):
            w.commit()
    assert cs.ingests() == []
    # write_blob is idempotent
    assert cs.write_blob(b"once", d.digest).digest == d.digest


def test_labels_update_and_fieldpaths(cs):
    d = cs.write_blob(b"x", labels={"a": "1", "b": "2"}).digest
    assert cs.update(d, {"a": "9"}, ["labels.a"]).labels == {"a": "9", "b": "2"}
    assert cs.update(d, {}, ["labels.b"]).labels == {"a": "9"}
    assert cs.update(d, {"c": "3"}).labels == {"c": "3"}
    with pytest.raises(InvalidArgument):
        cs.update(d, {}, ["size"])


def test_list_delete_notfound(cs):
    a, b = cs.write_blob(b"a").digest, cs.write_blob(b"b").digest
    assert [i.digest for i in cs.list()] == sorted([a, b])
    cs.delete(a)
    assert [i.digest for i in cs.list()] == [b]
    for call in (lambda: cs.delete(a), lambda: cs.info(a), lambda: cs.read(a),
                 lambda: cs.read_chunks(a)):
        with pytest.raises(NotFound):
            call()


@pytest.mark.parametrize("bad", ["", "sha256", "md5:abc", "sha256:" + "A" * 64,
                                 "sha256:" + "a" * 63, "sha256:../../etc/passwd"])
def test_bad_digests_refused(cs, bad):
    with pytest.raises(InvalidArgument):
        parse_digest(bad)
    with pytest.raises(InvalidArgument):
        cs.info(bad)


def test_hostile_ref_stays_in_ingest(cs, tmp_path):
    with cs.writer("../../../escape/ref") as w:
        w.write(b"x")
    assert not (tmp_path / "escape").exists()
    assert [s.ref for s in cs.ingests()] == ["../../../escape/ref"]
