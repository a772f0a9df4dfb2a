"""The gRPC translators of ``runtime.v1.RuntimeService`` and
``runtime.v1.ImageService``: each method checks the request's shape, calls
one method of the CRI runtime (:mod:`.cri`) and builds the response.
Errors become gRPC statuses in one function (:func:`status_of`), with the
codes containerd's CRI plugin gives: NOT_FOUND, INVALID_ARGUMENT,
FAILED_PRECONDITION, ALREADY_EXISTS, DEADLINE_EXCEEDED, UNIMPLEMENTED.
"""
from __future__ import annotations

import functools
import logging

import grpc

from pallet.core import errors
from pallet.proto.cri.runtime.v1 import api_pb2 as cri
from pallet.proto.cri.runtime.v1 import api_pb2_grpc

from pallet.plugins.api_cri import execs

log = logging.getLogger("pallet.cri.rpc")

#: items per message of the Stream* list calls
CHUNK = 500
#: how long a call waits for the runtime to have found its pods again at start-up
READY_TIMEOUT = 60.0


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status of an exception (the single mapping of this frontend)."""
    if isinstance(exc, errors.PalletError):
        return getattr(grpc.StatusCode, exc.grpc_code, grpc.StatusCode.UNKNOWN), exc.message
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, str(exc) or "not implemented"
    log.exception("unexpected error")
    return grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}"


def _wait_ready(runtime) -> None:
    """Calls wait until the pods and containers of an earlier run are found again
    (containerd's CRI plugin answers "not initialized" meanwhile)."""
    if not runtime.ready.wait(READY_TIMEOUT):
        raise errors.Unavailable("server is not initialized yet")


def unary(fn):
    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            _wait_ready(self.r)
            return fn(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:  # every failure becomes a status, never a traceback
            context.abort(*status_of(exc))
    return wrapper


def stream(fn):
    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            _wait_ready(self.r)
            yield from fn(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:
            context.abort(*status_of(exc))
    return wrapper


def _chunks(items):
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def _field(request, name: str) -> str:
    """An id of the request (an empty one is refused by the lookup, as containerd does)."""
    return getattr(request, name)


def _filter(request, name: str = "filter"):
    return getattr(request, name) if request.HasField(name) else None


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, runtime):
        self.r = runtime

    # --- runtime ---------------------------------------------------------------------------
    @unary
    def Version(self, request, context):
        return self.r.version()

    @unary
    def Status(self, request, context):
        return self.r.status(request.verbose)

    @unary
    def RuntimeConfig(self, request, context):
        return self.r.runtime_config()

    @unary
    def UpdateRuntimeConfig(self, request, context):
        self.r.network.update_pod_cidr(request.runtime_config.network_config.pod_cidr)
        return cri.UpdateRuntimeConfigResponse()

    # --- pods ------------------------------------------------------------------------------------
    @unary
    def RunPodSandbox(self, request, context):
        return cri.RunPodSandboxResponse(pod_sandbox_id=self.r.sandboxes.run(request))

    @unary
    def StopPodSandbox(self, request, context):
        self.r.sandboxes.stop(_field(request, "pod_sandbox_id"))
        return cri.StopPodSandboxResponse()

    @unary
    def RemovePodSandbox(self, request, context):
        self.r.sandboxes.remove(_field(request, "pod_sandbox_id"))
        return cri.RemovePodSandboxResponse()

    @unary
    def PodSandboxStatus(self, request, context):
        return self.r.sandboxes.status(_field(request, "pod_sandbox_id"), request.verbose)

    @unary
    def ListPodSandbox(self, request, context):
        return cri.ListPodSandboxResponse(items=self.r.sandboxes.list(_filter(request)))

    @stream
    def StreamPodSandboxes(self, request, context):
        for part in _chunks(self.r.sandboxes.list(_filter(request))):
            yield cri.StreamPodSandboxesResponse(pod_sandboxes=part)

    @unary
    def UpdatePodSandboxResources(self, request, context):
        sb = self.r.records.sandbox(_field(request, "pod_sandbox_id"))
        with sb.lock:
            if request.HasField("overhead"):
                sb.config.linux.overhead.CopyFrom(request.overhead)
            if request.HasField("resources"):
                sb.config.linux.resources.CopyFrom(request.resources)
        return cri.UpdatePodSandboxResourcesResponse()

    # --- containers -------------------------------------------------------------------------------
    @unary
    def CreateContainer(self, request, context):
        _field(request, "pod_sandbox_id")
        return cri.CreateContainerResponse(container_id=self.r.containers.create(request))

    @unary
    def StartContainer(self, request, context):
        self.r.containers.start(_field(request, "container_id"))
        return cri.StartContainerResponse()

    @unary
    def StopContainer(self, request, context):
        self.r.containers.stop(_field(request, "container_id"), int(request.timeout))
        return cri.StopContainerResponse()

    @unary
    def RemoveContainer(self, request, context):
        self.r.containers.remove(_field(request, "container_id"))
        return cri.RemoveContainerResponse()

    @unary
    def ListContainers(self, request, context):
        return cri.ListContainersResponse(containers=self.r.containers.list(_filter(request)))

    @stream
    def StreamContainers(self, request, context):
        for part in _chunks(self.r.containers.list(_filter(request))):
            yield cri.StreamContainersResponse(containers=part)

    @unary
    def ContainerStatus(self, request, context):
        return self.r.containers.status(_field(request, "container_id"), request.verbose)

    @unary
    def UpdateContainerResources(self, request, context):
        _field(request, "container_id")
        if request.HasField("windows") and not request.HasField("linux"):
            raise errors.InvalidArgument("windows resources are not supported on linux")
        self.r.containers.update_resources(request)
        return cri.UpdateContainerResourcesResponse()

    @unary
    def ReopenContainerLog(self, request, context):
        self.r.containers.reopen_log(_field(request, "container_id"))
        return cri.ReopenContainerLogResponse()

    @unary
    def CheckpointContainer(self, request, context):
        raise errors.NotImplementedYet("checkpointing a container needs CRIU, which pallet does "
                                       "not use")

    # --- streaming -------------------------------------------------------------------------------
    @unary
    def ExecSync(self, request, context):
        _field(request, "container_id")
        out, err, code = execs.exec_sync(self.r, request.container_id, list(request.cmd),
                                         int(request.timeout))
        return cri.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    @staticmethod
    def _check_streams(request) -> None:
        if not (request.stdin or request.stdout or request.stderr):
            raise errors.InvalidArgument("one of stdin, stdout, or stderr must be set")
        if request.tty and request.stderr:
            raise errors.InvalidArgument("tty and stderr cannot both be true")

    @unary
    def Exec(self, request, context):
        c = self.r.records.container(_field(request, "container_id"))
        if not request.cmd:
            raise errors.InvalidArgument("cmd must not be empty")
        self._check_streams(request)
        execs.check_running(c)
        return cri.ExecResponse(url=self.r.streams.register("exec", request))

    @unary
    def Attach(self, request, context):
        c = self.r.records.container(_field(request, "container_id"))
        self._check_streams(request)
        execs.check_running(c)
        return cri.AttachResponse(url=self.r.streams.register("attach", request))

    @unary
    def PortForward(self, request, context):
        sb = self.r.records.sandbox(_field(request, "pod_sandbox_id"))
        if self.r.sandboxes.state(sb) != cri.SANDBOX_READY:
            raise errors.PalletError("sandbox container is not running")
        return cri.PortForwardResponse(url=self.r.streams.register("portforward", request))

    # --- stats -------------------------------------------------------------------------------------
    @unary
    def ContainerStats(self, request, context):
        c = self.r.records.container(_field(request, "container_id"))
        return cri.ContainerStatsResponse(stats=self.r.stats.container(c))

    @unary
    def ListContainerStats(self, request, context):
        return cri.ListContainerStatsResponse(stats=self.r.stats.list_containers(
            _filter(request)))

    @stream
    def StreamContainerStats(self, request, context):
        for part in _chunks(self.r.stats.list_containers(_filter(request))):
            yield cri.StreamContainerStatsResponse(container_stats=part)

    @unary
    def PodSandboxStats(self, request, context):
        sb = self.r.records.sandbox(_field(request, "pod_sandbox_id"))
        return cri.PodSandboxStatsResponse(stats=self.r.stats.pod(sb))

    @unary
    def ListPodSandboxStats(self, request, context):
        return cri.ListPodSandboxStatsResponse(stats=self.r.stats.list_pods(_filter(request)))

    @stream
    def StreamPodSandboxStats(self, request, context):
        for part in _chunks(self.r.stats.list_pods(_filter(request))):
            yield cri.StreamPodSandboxStatsResponse(pod_sandbox_stats=part)

    @unary
    def ListMetricDescriptors(self, request, context):
        return cri.ListMetricDescriptorsResponse(descriptors=self.r.stats.descriptors())

    @unary
    def ListPodSandboxMetrics(self, request, context):
        return cri.ListPodSandboxMetricsResponse(pod_metrics=self.r.stats.pod_metrics())

    @stream
    def StreamPodSandboxMetrics(self, request, context):
        for part in _chunks(self.r.stats.pod_metrics()):
            yield cri.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=part)

    # --- events --------------------------------------------------------------------------------------
    @stream
    def GetContainerEvents(self, request, context):
        yield from self.r.events.subscribe(context.is_active)


class ImageService(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, runtime):
        self.r = runtime

    @unary
    def ListImages(self, request, context):
        return cri.ListImagesResponse(images=self.r.images.list(_filter(request)))

    @stream
    def StreamImages(self, request, context):
        for part in _chunks(self.r.images.list(_filter(request))):
            yield cri.StreamImagesResponse(images=part)

    @unary
    def ImageStatus(self, request, context):
        if not request.image.image:
            raise errors.InvalidArgument("image must not be empty")
        image, info = self.r.images.status(request.image, request.verbose)
        resp = cri.ImageStatusResponse(info=info)
        if image is not None:
            resp.image.CopyFrom(image)
        return resp

    @unary
    def PullImage(self, request, context):
        auth = request.auth if request.HasField("auth") else None
        return cri.PullImageResponse(image_ref=self.r.images.pull(request.image, auth))

    @unary
    def RemoveImage(self, request, context):
        if not request.image.image:
            raise errors.InvalidArgument("image must not be empty")
        self.r.images.remove(request.image)
        return cri.RemoveImageResponse()

    @unary
    def ImageFsInfo(self, request, context):
        return self.r.images.fs_info()


def register(server, runtime) -> None:
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(RuntimeService(runtime), server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(ImageService(runtime), server)
