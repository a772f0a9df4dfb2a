"""containerd.services.snapshots.v1.Snapshots."""
from __future__ import annotations

from google.protobuf import empty_pb2

from pallet.proto.containerd.events import snapshot_pb2 as ev
from pallet.proto.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from pallet.proto.containerd.services.snapshots.v1 import snapshots_pb2_grpc

from pallet.containerd_services import convert
from pallet.plugins.api_grpc.rpc import lease_of, namespace_of, stream, unary

_KINDS = {"view": pb.VIEW, "active": pb.ACTIVE, "committed": pb.COMMITTED}


def info_pb(i) -> pb.Info:
    return pb.Info(name=i.name, parent=i.parent or "", kind=_KINDS.get(i.kind, pb.UNKNOWN),
                   created_at=convert.ts(i.created_at), updated_at=convert.ts(i.updated_at),
                   labels=dict(i.labels))


def _mounts(ms):
    return [convert.mount_pb(m) for m in ms]


class SnapshotsService(snapshots_pb2_grpc.SnapshotsServicer):
    def __init__(self, backend):
        self.b = backend

    def _sn(self, request, context):
        return self.b.snapshotter(namespace_of(context), request.snapshotter)

    def _lease(self, request, context, key: str) -> None:
        """A snapshot made under a lease (``containerd-lease``) is held by it."""
        lease = lease_of(context)
        if lease:
            self.b.lease_add(namespace_of(context), lease, key,
                             f"snapshots/{request.snapshotter or 'overlayfs'}")

    @unary
    def Prepare(self, request, context):
        self._lease(request, context, request.key)
        ms = self._sn(request, context).prepare(request.key, request.parent or None,
                                                dict(request.labels))
        self.b.exchange.publish(namespace_of(context), "/snapshot/prepare",
                                ev.SnapshotPrepare(key=request.key, parent=request.parent))
        return pb.PrepareSnapshotResponse(mounts=_mounts(ms))

    @unary
    def View(self, request, context):
        self._lease(request, context, request.key)
        ms = self._sn(request, context).view(request.key, request.parent or None,
                                             dict(request.labels))
        return pb.ViewSnapshotResponse(mounts=_mounts(ms))

    @unary
    def Mounts(self, request, context):
        return pb.MountsResponse(mounts=_mounts(self._sn(request, context).mounts(request.key)))

    @unary
    def Commit(self, request, context):
        self._lease(request, context, request.name)
        self._sn(request, context).commit(request.name, request.key, dict(request.labels))
        self.b.exchange.publish(namespace_of(context), "/snapshot/commit",
                                ev.SnapshotCommit(key=request.key, name=request.name))
        return empty_pb2.Empty()

    @unary
    def Remove(self, request, context):
        self._sn(request, context).remove(request.key)
        self.b.exchange.publish(namespace_of(context), "/snapshot/remove",
                                ev.SnapshotRemove(key=request.key))
        return empty_pb2.Empty()

    @unary
    def Stat(self, request, context):
        return pb.StatSnapshotResponse(info=info_pb(self._sn(request, context).stat(request.key)))

    @unary
    def Update(self, request, context):
        info = self._sn(request, context).update(request.info.name, dict(request.info.labels),
                                                 list(request.update_mask.paths) or None)
        return pb.UpdateSnapshotResponse(info=info_pb(info))

    @stream
    def List(self, request, context):
        infos = self._sn(request, context).list(list(request.filters))
        for i in range(0, len(infos), 100):
            yield pb.ListSnapshotsResponse(info=[info_pb(x) for x in infos[i:i + 100]])

    @unary
    def Usage(self, request, context):
        u = self._sn(request, context).usage(request.key)
        return pb.UsageResponse(size=u.size, inodes=u.inodes)

    @unary
    def Cleanup(self, request, context):
        self._sn(request, context).cleanup()
        return empty_pb2.Empty()


def register(server, backend) -> None:
    snapshots_pb2_grpc.add_SnapshotsServicer_to_server(SnapshotsService(backend), server)
