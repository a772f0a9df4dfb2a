"""palletd's answers checked against the Engine API 1.43 document (swagger)."""
from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.root

SPEC = "/work/shared/specs/docker-engine-api-1.43.yaml"
HERE = os.path.dirname(os.path.abspath(__file__))


def _nullable(node):
    """go-swagger's ``x-nullable: true`` means null is allowed; so does every
    array and object, since Go writes nil slices and maps as null (dockerd too)."""
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items()}
        if "type" in node and (node.get("x-nullable") or node["type"] in ("array", "object")):
            t = node["type"]
            node["type"] = (t if isinstance(t, list) else [t]) + ["null"]
        if node.get("x-nullable") and "$ref" in node:
            node = {"anyOf": [{"$ref": node.pop("$ref")}, {"type": "null"}], **node}
        return node
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@pytest.fixture(scope="module")
def validate():
    yaml = pytest.importorskip("yaml")
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    if not os.path.exists(SPEC):
        pytest.skip("Engine API document not available")
    with open(SPEC) as f:
        doc = _nullable(json.loads(json.dumps(yaml.safe_load(f))))
    import referencing.jsonschema

    registry = referencing.Registry().with_resource(
        "urn:engine-api", referencing.Resource.from_contents(
            doc, default_specification=referencing.jsonschema.DRAFT4))

    def check(path: str, method: str, body, status: str = "200"):
        assert "schema" in doc["paths"][path][method]["responses"][status]
        pointer = "/paths/" + path.replace("~", "~0").replace("/", "~1") + \
            f"/{method}/responses/{status}/schema"
        jsonschema.Draft4Validator({"$ref": "urn:engine-api#" + pointer},
                                   registry=registry).validate(body)
    return check


def test_system(palletd, validate):
    validate("/info", "get", json.loads(palletd.api("GET", "/v1.43/info")[2]))
    validate("/version", "get", json.loads(palletd.api("GET", "/v1.43/version")[2]))


def test_containers_and_images(palletd, validate):
    status, _, body = palletd.api("POST", "/v1.43/containers/create",
                                  {"Image": "busybox", "Cmd": ["sh", "-c", "exit 2"]})
    assert status == 201
    validate("/containers/create", "post", json.loads(body), "201")
    cid = json.loads(body)["Id"]
    try:
        assert palletd.api("POST", f"/v1.43/containers/{cid}/start")[0] == 204
        status, _, body = palletd.api("POST", f"/v1.43/containers/{cid}/wait")
        validate("/containers/{id}/wait", "post", json.loads(body))
        assert json.loads(body)["StatusCode"] == 2
        validate("/containers/json", "get",
                 json.loads(palletd.api("GET", "/v1.43/containers/json?all=1")[2]))
        validate("/containers/{id}/json", "get",
                 json.loads(palletd.api("GET", f"/v1.43/containers/{cid}/json")[2]))
        validate("/images/json", "get", json.loads(palletd.api("GET", "/v1.43/images/json")[2]))
        validate("/images/{name}/json", "get",
                 json.loads(palletd.api("GET", "/v1.43/images/busybox/json")[2]))
    finally:
        palletd.api("DELETE", f"/v1.43/containers/{cid}?force=1")
    status, _, body = palletd.api("GET", "/v1.43/containers/pa-nope/json")
    validate("/containers/{id}/json", "get", json.loads(body), "404")
