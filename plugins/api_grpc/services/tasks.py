"""containerd.services.tasks.v1.Tasks, over the shims (see ..tasks)."""
from __future__ import annotations

from google.protobuf import empty_pb2

from pallet.core import errors
from pallet.proto.containerd.services.tasks.v1 import tasks_pb2 as pb
from pallet.proto.containerd.services.tasks.v1 import tasks_pb2_grpc

from pallet.containerd import filters
from pallet.plugins.api_grpc.rpc import namespace_of, unary


def _adapt(p, path):
    if path in (("id",), ("container_id",)):
        return True, p.container_id
    if path == ("pid",):
        return True, str(p.pid)
    if path == ("status",):
        return True, ["unknown", "created", "running", "stopped", "paused", "pausing"][p.status]
    return False, ""


class _IdOnly:
    """What the metrics filters see of a task: its id."""

    def __init__(self, id: str):
        self.container_id = id
        self.pid = 0
        self.status = 0


class TasksService(tasks_pb2_grpc.TasksServicer):
    def __init__(self, backend):
        self.b = backend

    @property
    def t(self):
        return self.b.tasks

    @unary
    def Create(self, request, context):
        pid = self.t.create(namespace_of(context), request)
        return pb.CreateTaskResponse(container_id=request.container_id, pid=pid)

    @unary
    def Start(self, request, context):
        return pb.StartResponse(pid=self.t.start(namespace_of(context), request.container_id,
                                                 request.exec_id))

    @unary
    def Delete(self, request, context):
        return self.t.delete(namespace_of(context), request.container_id)

    @unary
    def DeleteProcess(self, request, context):
        return self.t.delete_process(namespace_of(context), request.container_id,
                                     request.exec_id)

    @unary
    def Get(self, request, context):
        return pb.GetResponse(process=self.t.get(namespace_of(context), request.container_id,
                                                 request.exec_id))

    @unary
    def List(self, request, context):
        tasks = self.t.list(namespace_of(context))
        return pb.ListTasksResponse(tasks=filters.select(tasks, request.filter, _adapt))

    @unary
    def Kill(self, request, context):
        self.t.kill(namespace_of(context), request.container_id, request.signal, request.all,
                    request.exec_id)
        return empty_pb2.Empty()

    @unary
    def Exec(self, request, context):
        if not request.exec_id:
            raise errors.InvalidArgument("exec id must not be empty: invalid argument")
        self.t.exec(namespace_of(context), request)
        return empty_pb2.Empty()

    @unary
    def ResizePty(self, request, context):
        self.t.resize_pty(namespace_of(context), request)
        return empty_pb2.Empty()

    @unary
    def CloseIO(self, request, context):
        self.t.close_io(namespace_of(context), request)
        return empty_pb2.Empty()

    @unary
    def Pause(self, request, context):
        self.t.pause(namespace_of(context), request.container_id)
        return empty_pb2.Empty()

    @unary
    def Resume(self, request, context):
        self.t.resume(namespace_of(context), request.container_id)
        return empty_pb2.Empty()

    @unary
    def ListPids(self, request, context):
        return pb.ListPidsResponse(processes=self.t.pids(namespace_of(context),
                                                         request.container_id))

    @unary
    def Update(self, request, context):
        self.t.update(namespace_of(context), request)
        return empty_pb2.Empty()

    @unary
    def Metrics(self, request, context):
        parsed = filters.parse(list(request.filters))
        wanted = None
        if parsed:
            ids = [p.id for p in self.t.list(namespace_of(context))]
            wanted = {i for i in ids if filters.matches(parsed, _IdOnly(i), _adapt)}
        return pb.MetricsResponse(metrics=self.t.metrics(namespace_of(context), wanted))

    @unary
    def Checkpoint(self, request, context):
        raise errors.NotImplementedYet(f"checkpoint of task {request.container_id}: "
                                       "not implemented by pallet-containerd")

    @unary
    def Wait(self, request, context):
        r = self.t.wait(namespace_of(context), request.container_id, request.exec_id)
        return pb.WaitResponse(exit_status=r.exit_status, exited_at=r.exited_at)


def register(server, backend) -> None:
    tasks_pb2_grpc.add_TasksServicer_to_server(TasksService(backend), server)
