"""A volume plugin for the tests, speaking docker's plugin protocol on a unix
socket: ``python volplugin_server.py SOCKET DATA_ROOT CALL_LOG``.

Each volume is a directory under DATA_ROOT; every call is appended to
CALL_LOG as a JSON line, so that the tests see what palletd asked.  Create
with the option ``fail=1`` is refused with an ``Err``, as a driver refuses.
"""
import json
import os
import shutil
import sys

from aiohttp import web

SOCKET, ROOT, CALLS = sys.argv[1:4]
volumes: dict[str, dict] = {}
mounts: dict[str, set] = {}


def record(method, body):
    with open(CALLS, "a") as f:
        f.write(json.dumps({"method": method, "body": body}) + "\n")


def answer(obj):
    return web.json_response(obj, content_type="application/vnd.docker.plugins.v1.2+json")


async def handle(request):
    method = request.match_info["method"]
    raw = await request.read()
    body = json.loads(raw) if raw.strip() else {}
    record(method, body)
    name = body.get("Name", "")
    path = os.path.join(ROOT, name)
    if method == "Plugin.Activate":
        return answer({"Implements": ["VolumeDriver"]})
    if method == "VolumeDriver.Capabilities":
        return answer({"Capabilities": {"Scope": "global"}})
    if method == "VolumeDriver.Create":
        if (body.get("Opts") or {}).get("fail"):
            return answer({"Err": f"refusing to create {name}"})
        os.makedirs(path, exist_ok=True)
        volumes[name] = body.get("Opts") or {}
        return answer({"Err": ""})
    if name and name not in volumes:
        return answer({"Err": f"no such volume {name}"})
    if method == "VolumeDriver.Remove":
        if mounts.get(name):
            return answer({"Err": f"{name} is mounted"})
        shutil.rmtree(path, ignore_errors=True)
        volumes.pop(name)
        return answer({"Err": ""})
    if method == "VolumeDriver.Mount":
        mounts.setdefault(name, set()).add(body["ID"])
        return answer({"Mountpoint": path, "Err": ""})
    if method == "VolumeDriver.Unmount":
        mounts.get(name, set()).discard(body["ID"])
        return answer({"Err": ""})
    if method == "VolumeDriver.Path":
        return answer({"Mountpoint": path, "Err": ""})
    if method == "VolumeDriver.Get":
        return answer({"Volume": {"Name": name, "Mountpoint": path, "Status": {}}, "Err": ""})
    if method == "VolumeDriver.List":
        return answer({"Volumes": [{"Name": n, "Mountpoint": os.path.join(ROOT, n)}
                                   for n in volumes], "Err": ""})
    return web.json_response({"Err": f"unknown method {method}"}, status=404)


app = web.Application()
app.router.add_post("/{method}", handle)
web.run_app(app, path=SOCKET, print=None, access_log=None)
