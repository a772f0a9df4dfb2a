"""containerd.services.content.v1.Content.

Blobs are stored once, and seen per namespace with labels of their own
(:mod:`..contentns`), as containerd does.  A write under a lease (the
``containerd-lease`` header) adds its ingest, then its blob, to the lease.
"""
from __future__ import annotations

from google.protobuf import empty_pb2

from pallet.core import errors
from pallet.proto.containerd.events import content_pb2 as ev
from pallet.proto.containerd.services.content.v1 import content_pb2 as pb
from pallet.proto.containerd.services.content.v1 import content_pb2_grpc

from pallet.containerd_services import convert
from pallet.containerd import filters
from pallet.plugins.api_grpc.rpc import lease_of, namespace_of, stream, unary

READ_CHUNK = 1 << 20


def _info(i) -> pb.Info:  # contentns.Info
    return pb.Info(digest=i.digest, size=i.size, created_at=convert.ts(i.created_at),
                   updated_at=convert.ts(i.updated_at), labels=dict(i.labels))


def _status(s) -> pb.Status:
    return pb.Status(ref=s.ref, offset=s.offset, total=s.total or 0, expected=s.expected or "",
                     started_at=convert.ts(s.started_at), updated_at=convert.ts(s.updated_at))


def _adapt(i, path):
    head, rest = path[0], path[1:]
    if head == "digest" and not rest:
        return True, i.digest
    if head == "size" and not rest:
        return True, str(i.size)
    if head == "labels" and rest:
        return filters.labels_field(i.labels, rest)
    return False, ""


class ContentService(content_pb2_grpc.ContentServicer):
    def __init__(self, backend):
        self.b = backend

    @property
    def store(self):
        return self.b.content

    @property
    def ns(self):
        return self.b.content_namespaces

    @unary
    def Info(self, request, context):
        return pb.InfoResponse(info=_info(self.ns.info(namespace_of(context), request.digest)))

    @unary
    def Update(self, request, context):
        ns = namespace_of(context)
        paths = list(request.update_mask.paths) or None
        for p in paths or ():
            if p != "labels" and not p.startswith("labels."):
                raise errors.InvalidArgument(f"cannot update {p!r} field on content info "
                                             f"{request.info.digest!r}: invalid argument")
        info = self.ns.update(ns, request.info.digest, dict(request.info.labels), paths)
        return pb.UpdateResponse(info=_info(info))

    @stream
    def List(self, request, context):
        infos = filters.select(self.ns.list(namespace_of(context)), list(request.filters),
                               _adapt)
        for i in range(0, len(infos), 100):
            yield pb.ListContentResponse(info=[_info(x) for x in infos[i:i + 100]])

    @unary
    def Delete(self, request, context):
        self.ns.delete(namespace_of(context), request.digest)
        self.b.exchange.publish(namespace_of(context), "/content/delete",
                                ev.ContentDelete(digest=request.digest))
        return empty_pb2.Empty()

    @stream
    def Read(self, request, context):
        self.ns.check(namespace_of(context), request.digest)
        size = request.size if request.size > 0 else -1
        offset = max(request.offset, 0)
        for chunk in self.store.read_chunks(request.digest, offset, size, READ_CHUNK):
            yield pb.ReadContentResponse(offset=offset, data=chunk)
            offset += len(chunk)

    @unary
    def Status(self, request, context):
        namespace_of(context)
        return pb.StatusResponse(status=_status(self.store.status(request.ref)))

    @unary
    def ListStatuses(self, request, context):
        namespace_of(context)
        statuses = self.store.ingests()
        parsed = filters.parse(list(request.filters))
        statuses = [s for s in statuses if filters.matches(
            parsed, s, lambda s, p: (True, s.ref) if p == ("ref",) else (False, ""))]
        return pb.ListStatusesResponse(statuses=[_status(s) for s in statuses])

    @unary
    def Abort(self, request, context):
        namespace_of(context)
        self.store.abort(request.ref)
        return empty_pb2.Empty()

    def Write(self, request_iterator, context):
        """One ingest per stream: STAT, WRITE (at the current offset, or 0 to
        restart), COMMIT (checks size and digest, sets labels); one response
        per request, as containerd's content service does."""
        writer = None
        try:
            ns = namespace_of(context)
            lease = lease_of(context)
            for req in request_iterator:
                if writer is None:
                    if not req.ref:
                        raise errors.InvalidArgument(
                            "first message must have a reference: invalid argument")
                    if lease:
                        self.b.lease_add(ns, lease, req.ref, "ingests")
                    try:
                        writer = self.store.writer(req.ref, req.expected or None,
                                                   req.total if req.total > 0 else None)
                    except errors.AlreadyExists:
                        # shared content: the namespace gets the blob at once
                        self._committed(ns, lease, req.ref, req.expected, None)
                        raise
                if req.expected:
                    writer.expected = req.expected
                if req.total > 0:
                    writer.total = req.total
                if req.action not in (pb.STAT, pb.WRITE, pb.COMMIT):
                    raise errors.InvalidArgument(f"{req.action} is not a valid write action: "
                                                 "invalid argument")
                if req.action != pb.STAT:
                    if req.offset > 0 and req.offset != writer.offset:
                        raise errors.PalletError(
                            f"write @{req.offset} must occur at current offset {writer.offset}")
                    if req.offset == 0 and writer.offset > 0:
                        writer.truncate(0)  # containerd: offset 0 restarts the ingest
                    if req.data:
                        writer.write(req.data)
                resp = pb.WriteContentResponse(action=req.action, offset=writer.offset,
                                               total=writer.total or 0)
                if req.action == pb.STAT:
                    st = writer.status()
                    resp.started_at.CopyFrom(convert.ts(st.started_at))
                    resp.updated_at.CopyFrom(convert.ts(st.updated_at))
                    resp.digest = writer.digest()
                elif req.action == pb.COMMIT:
                    size = req.total if req.total > 0 else (writer.total or 0)
                    labels = dict(req.labels) if req.labels else None
                    try:
                        digest = writer.commit(size, req.expected or writer.expected or None,
                                               labels)
                    except errors.AlreadyExists:
                        self._committed(ns, lease, writer.ref, writer.digest(), labels)
                        raise
                    self._committed(ns, lease, writer.ref, digest, labels or {}, fresh=True)
                    resp.digest = digest
                    yield resp
                    writer = None
                    return
                yield resp
        except Exception as exc:  # noqa: BLE001 - mapped to a status like every call
            from pallet.plugins.api_grpc.rpc import status_of

            code, message = status_of(exc)
            context.abort(code, message)
        finally:
            if writer is not None:
                writer.close()


    def _committed(self, ns: str, lease: str, ref: str, digest: str, labels, *,
                   fresh: bool = False) -> None:
        self.ns.add(ns, digest, labels, fresh=fresh)
        if lease:
            self.b.lease_add(ns, lease, digest, "content")
            self.b.lease_remove(ns, lease, ref, "ingests")


def register(server, backend) -> None:
    content_pb2_grpc.add_ContentServicer_to_server(ContentService(backend), server)
