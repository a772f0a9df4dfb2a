"""Pure logic of the image frontends: reference patterns, rmi's conflict rules,
pull references, times, the CLI's rendering of JSON progress streams (plain
and terminal), and palletd's progress streams that outlive their client."""
from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile

import pytest

from pallet.core import errors
from pallet.engine import image_filters as flt
from pallet.engine import image_remove as rm
from pallet.engine import images as im
from pallet.engine.pull import parse_pull_reference


@pytest.mark.parametrize("pattern,name,ok", [
    ("busybox", "docker.io/library/busybox:latest", True),
    ("busybox:latest", "docker.io/library/busybox:latest", True),
    ("busybox:1", "docker.io/library/busybox:latest", False),
    ("bu*", "docker.io/library/busybox:latest", True),
    ("pl-*", "docker.io/pl-flt/a:1", False),          # * does not cross /
    ("pl-*/*", "docker.io/pl-flt/a:1", True),
    ("pl-flt/?", "docker.io/pl-flt/a:1", True),
    ("pl-flt/[ab]:1", "docker.io/pl-flt/b:1", True),
    ("pl-flt/[^ab]:1", "docker.io/pl-flt/b:1", False),
    ("127.0.0.1:5000/x/*", "127.0.0.1:5000/x/y:2", True),
])
def test_reference_matches(pattern, name, ok):
    assert flt.reference_matches(pattern, name) is ok


def test_single_reference_and_conflicts():
    tag = "docker.io/library/busybox:latest"
    dig = "docker.io/library/busybox@sha256:" + "a" * 64
    other = "docker.io/library/other:1"
    assert rm._single_reference([tag])
    assert rm._single_reference([tag, dig])
    assert not rm._single_reference([tag, other])
    assert not rm._single_reference([])
    running = {"c1": True, "c2": False}.get
    hard = rm._conflict("abc", ["c1"], running, [], True, True)
    assert "cannot be forced" in hard.message and "running container c1" in hard.message
    assert rm._conflict("abc", ["c2"], running, [], True, True) is None
    soft = rm._conflict("abc", ["c2"], running, [], False, False)
    assert "(must be forced) - image is being used by stopped container c2" in soft.message
    refs = rm._conflict("abc", [], running, [other], False, False)
    assert "referenced in multiple repositories" in refs.message


def test_record_names_and_digests():
    target = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
              "digest": "sha256:" + "1" * 64, "size": 10}
    manifest = {"config": {"digest": "sha256:" + "2" * 64}, "layers": [{"size": 7}]}
    rec = im.ImageRecord(target, target, manifest, {"created": "2020-01-02T03:04:05.123Z"},
                         ["docker.io/library/busybox:latest", "moby-dangling@sha256:x",
                          "127.0.0.1:5000/a/b@sha256:" + "3" * 64, "127.0.0.1:5000/a/c:1"],
                         0, {"containerd.io/distribution.source.127.0.0.1:5000": "a/c,a/d",
                             "other": "x"}, [1000])
    assert rec.repo_tags == ["127.0.0.1:5000/a/c:1", "busybox:latest"]
    # a/d: pulled from there once, but no tag of it left
    assert rec.repo_digests == ["127.0.0.1:5000/a/b@sha256:" + "3" * 64,
                                "127.0.0.1:5000/a/c@sha256:" + "1" * 64]
    assert not rec.dangling and rec.size == 1000
    assert rec.created_unix == 1577934245
    s = rec.summary()
    assert s["Id"] == "sha256:" + "2" * 64 and s["Containers"] == -1
    dangling = im.ImageRecord(target, target, manifest, {}, ["moby-dangling@sha256:x"], 5)
    assert dangling.dangling and dangling.repo_tags == [] and dangling.created_unix == 5
    assert dangling.size == 7  # no snapshot usage: the blob's size


def test_times_and_filters():
    assert flt.created_unix("2000-01-01T00:00:00Z") == 946684800
    assert flt.created_unix("2000-01-01T01:00:00.999999999+01:00") == 946684800
    assert flt.created_unix("") == 0 and flt.created_unix("yesterday") == 0
    assert flt.until_time("946684800") == 946684800
    assert flt.until_time("2000-01-01") == 946684800
    assert abs(flt.until_time("1h30m") - (__import__("time").time() - 5400)) < 5
    with pytest.raises(errors.InvalidArgument):
        flt.until_time("soon")
    assert flt.bool_filter(["true", "1"], "dangling") is True
    with pytest.raises(errors.InvalidArgument):
        flt.bool_filter(["true", "false"], "dangling")
    with pytest.raises(errors.InvalidArgument):
        flt.bool_filter(["maybe"], "dangling")
    assert flt.labels_match({"a": "1", "b": ""}, ["a=1", "b"])
    assert not flt.labels_match({"a": "1"}, ["a=2"])


def test_parse_pull_reference():
    r = parse_pull_reference("busybox", "latest")
    assert str(r) == "docker.io/library/busybox:latest"
    r = parse_pull_reference("127.0.0.1:5000/x/y", "sha256:" + "a" * 64)
    assert r.digest == "sha256:" + "a" * 64 and r.tag is None
    r = parse_pull_reference("busybox:1.2", "")
    assert r.tag == "1.2"
    r = parse_pull_reference("busybox", None)
    assert r.tag is None and r.digest is None   # every tag
    with pytest.raises(errors.InvalidArgument):
        parse_pull_reference("Busy Box", "1")
    with pytest.raises(errors.InvalidArgument):
        parse_pull_reference("busybox", "bad tag!")


class _Resp:
    def __init__(self, msgs):
        self.msgs = msgs

    def json_stream(self):
        return iter(self.msgs)


PULL = [
    {"status": "Pulling from lib/busybox", "progressDetail": {}, "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 500, "total": 1000},
     "progress": "[=====>    ] 500B/1kB", "id": "aaa"},
    {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Digest: sha256:x"},
    {"progressDetail": {}, "aux": {"Tag": "t"}},
]


def test_display_plain_and_terminal():
    from pallet.client.cmd_registry import StreamError, display_json_messages, progress_text

    out = io.StringIO()
    aux = []
    display_json_messages(_Resp(PULL), out, terminal=False, aux=aux.append)
    assert out.getvalue() == ("latest: Pulling from lib/busybox\naaa: Pulling fs layer\n"
                              "bbb: Pulling fs layer\naaa: Download complete\n"
                              "Digest: sha256:x\n")
    assert aux == [{"Tag": "t"}]
    term = io.StringIO()
    display_json_messages(_Resp(PULL[:5]), term, terminal=True)
    text = term.getvalue()
    # each id has its line; an update moves the cursor up to it and back down
    assert "\x1b[2A\x1b[2K\raaa: Downloading     500B/1kB\r\x1b[2B" in text, repr(text)
    assert text.count("\n") == 3  # a new line per id; updates rewrite it in place
    assert text.endswith("\x1b[2A\x1b[2K\raaa: Download complete \r\x1b[2B")
    assert progress_text({"current": 500, "total": 1000}, 120) == \
        "[=========================>                         ]     500B/1kB"
    assert progress_text({"current": 5}, 120) == "      5B"
    assert progress_text({}, 120) == ""
    with pytest.raises(StreamError, match="boom"):
        display_json_messages(_Resp([{"errorDetail": {"message": "boom"}, "error": "boom"}]),
                              io.StringIO(), terminal=False)




def test_stream_job_outlives_its_client():
    """The job goes on after the client hangs up; errors before the first
    message are plain HTTP errors, after it the stream's last line."""
    from aiohttp import web

    from pallet.engine.pull import Jobs, stream_job
    from pallet.plugins.api_rest.server import error_middleware

    jobs = Jobs()
    state = {}

    async def handler(request):
        kind = request.query["kind"]

        async def work(progress):
            if kind == "early":
                raise errors.NotFound("manifest unknown")
            progress({"status": "first"})
            if kind == "late":
                progress({"status": "second"})
                raise errors.InvalidArgument("bad layer")
            progress({"status": "second"})
            await state["go"].wait()
            progress({"status": "third"})
            state["done"] = True
        return await stream_job(request, jobs, work, hold=1)

    async def main():
        state["go"] = asyncio.Event()
        app = web.Application(middlewares=[error_middleware])
        app.router.add_post("/x", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        tmp = tempfile.mkdtemp(prefix="pl-ju-")
        path = os.path.join(tmp, "s")
        site = web.UnixSite(runner, path)
        await site.start()

        async def request(kind, read_all=True):
            r, w = await asyncio.open_unix_connection(path)
            w.write(f"POST /x?kind={kind} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    "Content-Length: 0\r\n\r\n".encode())
            await w.drain()
            if not read_all:
                head = await r.readuntil(b"second")
                w.transport.abort()
                return head
            data = await r.read()
            w.close()
            return data
        try:
            early = await request("early")
            assert early.startswith(b"HTTP/1.1 404") and b"manifest unknown" in early
            late = await request("late")
            assert late.startswith(b"HTTP/1.1 200")
            assert b'"status": "first"' in late and b'"error": "bad layer"' in late
            head = await request("slow", read_all=False)
            assert b'"status": "first"' in head
            await asyncio.sleep(0.1)
            state["go"].set()
            for _ in range(100):
                if state.get("done"):
                    break
                await asyncio.sleep(0.02)
            assert state.get("done")
        finally:
            await runner.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)
    asyncio.run(main())
