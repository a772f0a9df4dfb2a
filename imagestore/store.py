"""The image store the store plugins provide: one handle on content,
metadata, the snapshotters a plugin brings, the applier and the archives.

A plugin of the image_store role (store_overlay, store_native, a third
party's) passes its snapshotter classes (:class:`.snapshots.Snapshotter`
subclasses) to :meth:`ImageStore.at`; everything else is shared.
Everything is created on first use, so that providing the store costs
nothing.
"""
from __future__ import annotations

import contextlib
import threading
import uuid
from typing import BinaryIO, Iterator, Mapping, Sequence

from pallet.core.errors import ConfigError, InvalidArgument, NotFound
from pallet.core.models import Descriptor


def registry_options(section: Mapping, plugin: str):
    """The registry options of a store plugin's section (dockerd's names:
    ``insecure-registries``, ``registry-mirrors``, ``max-concurrent-downloads``,
    ...), for the pulls and pushes made next to the store; ``ConfigError``
    naming the plugin when they are wrong."""
    from pallet.distribution.registry import RegistryOptions

    try:
        return RegistryOptions.from_config(section)
    except InvalidArgument as e:
        raise ConfigError(f"plugins.{plugin}: {e.message}") from None


class ImageStore:
    """containerd's image and storage services (:class:`pallet.core.contracts.ImageStore`).

    ``content_root`` and ``metadata_db`` come from ``kernel.paths``;
    ``snapshotters`` are ``(class, root)`` pairs, the first being the
    default; ``registry_options`` configure :meth:`pull` and :meth:`push`.
    """

    def __init__(self, content_root: str, metadata_db: str,
                 snapshotters: Sequence[tuple[type, str]], registry_options=None):
        if not snapshotters:
            raise ConfigError("image store: no snapshotter given")
        self.content_root = content_root
        self.metadata_db = metadata_db
        self._snapshotter_classes = {cls.name: (cls, root) for cls, root in snapshotters}
        self.default_snapshotter = snapshotters[0][0].name
        #: :class:`~pallet.distribution.registry.RegistryOptions` (insecure
        #: registries, mirrors, concurrency); None: the defaults
        self.registry_options = registry_options
        self._lock = threading.Lock()
        self._content = self._metadata = self._applier = None
        self._snapshotters: dict[str, object] = {}

    @classmethod
    def at(cls, paths, snapshotters: Sequence[type], registry_options=None) -> "ImageStore":
        """The store laid out where docs/ARCHITECTURE.md says (``paths`` is a
        :class:`pallet.core.paths.Paths`), each snapshotter at containerd's
        root for its name (``io.containerd.snapshotter.v1.<name>``)."""
        return cls(paths.content_root, paths.metadata_db,
                   [(s, paths.snapshotter_root(s.name)) for s in snapshotters],
                   registry_options)

    @property
    def content(self):
        """The :class:`~.content.ContentStore`."""
        with self._lock:
            if self._content is None:
                from pallet.imagestore.content import ContentStore
                self._content = ContentStore(self.content_root)
            return self._content

    @property
    def metadata(self):
        """The :class:`~.metadata.MetadataStore` (images, namespaces, leases)."""
        with self._lock:
            if self._metadata is None:
                from pallet.imagestore.metadata import MetadataStore
                self._metadata = MetadataStore(self.metadata_db)
            return self._metadata

    @property
    def applier(self):
        """The :class:`~.apply.Applier` (containerd's Diff.Apply)."""
        content = self.content
        with self._lock:
            if self._applier is None:
                from pallet.imagestore.apply import Applier
                self._applier = Applier(content)
            return self._applier

    def snapshotter_names(self) -> tuple[str, ...]:
        """The snapshotters of this store, the default first."""
        return tuple(self._snapshotter_classes)

    def snapshotter(self, name: str | None = None):
        """The snapshotter ``name`` (default: :attr:`default_snapshotter`);
        ``NotFound`` for one this store does not have."""
        name = name or self.default_snapshotter
        with self._lock:
            if name not in self._snapshotters:
                if name not in self._snapshotter_classes:
                    raise NotFound(f"snapshotter not loaded: {name} (this store has "
                                   f"{', '.join(self._snapshotter_classes)})")
                cls, root = self._snapshotter_classes[name]
                self._snapshotters[name] = cls(root)
            return self._snapshotters[name]

    # --- archives -------------------------------------------------------------------

    def import_archive(self, src: str | BinaryIO, namespace: str, *,
                       base_name: str | None = None, labels: dict | None = None) -> list:
        """Load an archive: copy its blobs into the content store, then create
        or re-point its named images in ``namespace``; return the image records.

        An OCI image named only by a tag (``ref.name`` = ``latest``) is named
        ``{base_name}:{tag}`` when ``base_name`` is given, and skipped otherwise.
        Blobs already stored are not copied again.  Names are created only once
        every blob is in, so an interrupted load leaves no image behind.
        """
        from pallet.distribution.archive import normalize_name, read_archive
        from pallet.imagestore.metadata import ImageRecord, LeaseResource

        content = self.content
        with read_archive(src) as archive, self._lease(namespace) as lease:
            for blob in archive.blobs():
                # leased until the images name them, so a GC meanwhile keeps them
                self.metadata.add_lease_resource(namespace, lease,
                                                 LeaseResource(blob.digest, "content"))
                if content.exists(blob.digest):
                    continue
                with blob.open() as f:
                    content.write_blob(f, blob.digest, blob.size)
            records = []
            for img in archive.images():
                name = img.name
                if name is None and base_name and img.ref_name:
                    name = normalize_name(f"{base_name}:{img.ref_name}")
                if name is None:
                    continue
                records.append(self.metadata.put_image(
                    namespace, ImageRecord(name, img.target, dict(labels or {}))))
        return records

    def export_archive(self, out: str | BinaryIO, namespace: str, names: Sequence[str],
                       platform=None) -> None:
        """Write the named images of ``namespace`` as one docker-save tarball;
        several names of the same target become one image with several tags."""
        from pallet.distribution.archive import export_images

        by_target: dict[Descriptor, list[str]] = {}
        for name in names:
            rec = self.metadata.get_image(namespace, name)
            by_target.setdefault(rec.target, []).append(rec.name)
        export_images(self.content, [(n, t) for t, n in by_target.items()], out, platform)

    # --- images -----------------------------------------------------------------------

    def resolve(self, target: Descriptor, platform=None):
        """The manifest, config and layers of an image target for ``platform``
        (default this machine); see :func:`pallet.distribution.manifests.resolve`."""
        from pallet.distribution.manifests import resolve
        return resolve(self.content, target, platform)

    def unpack(self, target: Descriptor, snapshotter: str | None = None,
               namespace: str | None = None, platform=None) -> str:
        """Unpack an image's layers as committed snapshots named by chain ID
        (in ``namespace``'s view when given); return the top chain ID."""
        from pallet.imagestore.images import unpack
        from pallet.imagestore.metadata import LeaseResource

        snap = self.snapshotter(snapshotter)
        view = snap.namespaced(namespace) if namespace else snap
        image = self.resolve(target, platform)
        ns = namespace or "default"
        with self._lease(ns) as lease:
            # layers committed before the config is labelled are leased meanwhile,
            # and so are the half-applied snapshots (a crash leaves them to GC)
            def hold(key: str) -> None:
                self.metadata.add_lease_resource(ns, lease,
                                                 LeaseResource(key, f"snapshots/{snap.name}"))
            for chain_id in image.chain_ids:
                hold(chain_id)
            return unpack(self.content, view, self.applier, image, labels_snapshotter=snap.name,
                          on_key=hold)

    def target(self, namespace: str, snapshotter: str | None = None):
        """This store as a :class:`~pallet.distribution.targets.ContentTarget` (what pull and push
        write to and read from) in ``namespace``."""
        from pallet.imagestore.target import LocalTarget
        return LocalTarget(self, namespace, snapshotter=snapshotter)

    def pull(self, ref: str, namespace: str, **kw):
        """Pull ``ref`` into ``namespace`` from a plain thread; see :func:`pallet.distribution.pull.pull`."""
        from pallet.distribution.pull import pull_sync
        kw.setdefault("options", self.registry_options)
        return pull_sync(ref, self.target(namespace, kw.pop("snapshotter", None)),
                         snapshotter=None, **kw)

    def push(self, ref: str, namespace: str, **kw):
        """Push an image of ``namespace`` from a plain thread; see :func:`pallet.distribution.push.push`."""
        from pallet.distribution.push import push
        from pallet.distribution.registry import run_sync
        kw.setdefault("options", self.registry_options)
        return run_sync(lambda: push(ref, self.target(namespace), **kw))

    @contextlib.contextmanager
    def _lease(self, namespace: str) -> Iterator[str]:
        """A lease held for the duration of the block (what containerd's
        clients take around a pull or an unpack); it ends with this process."""
        from pallet.distribution.mediatypes import LABEL_GC_EXPIRE
        from pallet.distribution.targets import LABEL_LEASE_OWNER, expire_label, owner_label

        lease = f"pallet-{uuid.uuid4().hex}"
        self.metadata.create_lease(namespace, lease, {LABEL_GC_EXPIRE: expire_label(86400),
                                                      LABEL_LEASE_OWNER: owner_label()})
        try:
            yield lease
        finally:
            self.metadata.delete_lease(namespace, lease)

    def gc(self, dry_run: bool = False):
        """Remove content and snapshots nothing refers to (see :mod:`.gc`)."""
        from pallet.imagestore.gc import collect
        return collect(self, dry_run)

    def close(self) -> None:
        """Close the databases (they reopen on next use)."""
        with self._lock:
            if self._content is not None:
                self._content.close()
            if self._metadata is not None:
                self._metadata.close()
            for s in self._snapshotters.values():
                s.close()
