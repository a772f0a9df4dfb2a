"""containerd Tasks calls that the core client (``pallet.containerd.client``)
does not wrap yet, made the same way it makes the others (same stub, same
namespace header, same error mapping).  To move into the core client."""
from __future__ import annotations

import json

from google.protobuf import any_pb2

from pallet.proto.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc

RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"


async def task_update(ctrd, container_id: str, resources: dict) -> None:
    """Tasks.Update with OCI LinuxResources (``docker update``)."""
    req = tasks_pb2.UpdateTaskRequest(
        container_id=container_id,
        resources=any_pb2.Any(type_url=RESOURCES_TYPE_URL, value=json.dumps(resources).encode()))
    await ctrd._call(ctrd._stub(tasks_pb2_grpc.TasksStub).Update, req)
