"""The shim's hand-declared messages against the generated protobuf classes:
same bytes both ways, for every field of every message (field names and numbers
of containerd 1.6, the cgroups module and runc's options)."""
from __future__ import annotations

import random

import pytest
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import timestamp_pb2

from pallet.proto.containerd.events import task_pb2 as ev_pb
from pallet.proto.containerd.services.ttrpc.events.v1 import events_pb2 as tev_pb
from pallet.proto.containerd.task.v2 import shim_pb2
from pallet.proto.containerd.types import mount_pb2
from pallet.proto.containerd.types.task import task_pb2
from pallet.proto import wire as pbwire
from pallet.proto import shim_task as m

GENERATED = {cls.DESCRIPTOR.full_name: cls for mod in (shim_pb2, ev_pb, tev_pb, mount_pb2,
                                                          task_pb2)
             for cls in (getattr(mod, n) for n in mod.DESCRIPTOR.message_types_by_name)}
GENERATED["google.protobuf.Any"] = any_pb2.Any
GENERATED["google.protobuf.Timestamp"] = timestamp_pb2.Timestamp

# the cgroups metrics and runc's options are not among pallet's generated protos:
# declare them here from the .proto sources' field tables, through protobuf itself
_METRICS_PROTO = """
syntax = "proto3";
package io.containerd.cgroups.v1;
message Metrics { repeated HugetlbStat hugetlb = 1; PidsStat pids = 2; CPUStat cpu = 3;
  MemoryStat memory = 4; BlkIOStat blkio = 5; MemoryOomControl memory_oom_control = 9; }
message HugetlbStat { uint64 usage = 1; uint64 max = 2; uint64 failcnt = 3; string pagesize = 4; }
message PidsStat { uint64 current = 1; uint64 limit = 2; }
message CPUStat { CPUUsage usage = 1; Throttle throttling = 2; }
message CPUUsage { uint64 total = 1; uint64 kernel = 2; uint64 user = 3; repeated uint64 per_cpu = 4; }
message Throttle { uint64 periods = 1; uint64 throttled_periods = 2; uint64 throttled_time = 3; }
message MemoryStat { uint64 cache = 1; uint64 rss = 2; uint64 rss_huge = 3; uint64 mapped_file = 4;
  uint64 dirty = 5; uint64 writeback = 6; uint64 pg_pg_in = 7; uint64 pg_pg_out = 8;
  uint64 pg_fault = 9; uint64 pg_maj_fault = 10; uint64 inactive_anon = 11;
  uint64 active_anon = 12; uint64 inactive_file = 13; uint64 active_file = 14;
  uint64 unevictable = 15; uint64 hierarchical_memory_limit = 16;
  uint64 hierarchical_swap_limit = 17; uint64 total_cache = 18; uint64 total_rss = 19;
  uint64 total_rss_huge = 20; uint64 total_mapped_file = 21; uint64 total_dirty = 22;
  uint64 total_writeback = 23; uint64 total_pg_pg_in = 24; uint64 total_pg_pg_out = 25;
  uint64 total_pg_fault = 26; uint64 total_pg_maj_fault = 27; uint64 total_inactive_anon = 28;
  uint64 total_active_anon = 29; uint64 total_inactive_file = 30; uint64 total_active_file = 31;
  uint64 total_unevictable = 32; MemoryEntry usage = 33; MemoryEntry swap = 34;
  MemoryEntry kernel = 35; MemoryEntry kernel_tcp = 36; }
message MemoryEntry { uint64 limit = 1; uint64 usage = 2; uint64 max = 3; uint64 failcnt = 4; }
message MemoryOomControl { uint64 oom_kill_disable = 1; uint64 under_oom = 2; uint64 oom_kill = 3; }
message BlkIOStat { repeated BlkIOEntry io_service_bytes_recursive = 1;
  repeated BlkIOEntry io_serviced_recursive = 2; repeated BlkIOEntry io_queued_recursive = 3;
  repeated BlkIOEntry io_service_time_recursive = 4; repeated BlkIOEntry io_wait_time_recursive = 5;
  repeated BlkIOEntry io_merged_recursive = 6; repeated BlkIOEntry io_time_recursive = 7;
  repeated BlkIOEntry sectors_recursive = 8; }
message BlkIOEntry { string op = 1; string device = 2; uint64 major = 3; uint64 minor = 4;
  uint64 value = 5; }
"""


def _runtime_classes() -> dict:
    """Metrics and runc's options built as descriptors (no protoc needed)."""
    pool = descriptor_pool.DescriptorPool()
    out = {}
    for name, fields in _parse(_METRICS_PROTO, "io.containerd.cgroups.v1"):
        out[name] = fields
    fdp = descriptor_pb2.FileDescriptorProto(name="pallet_test_metrics.proto",
                                             package="io.containerd.cgroups.v1", syntax="proto3")
    for name, fields in out.items():
        msg = fdp.message_type.add(name=name.rsplit(".", 1)[1])
        for number, fname, ftype, repeated in fields:
            f = msg.field.add(name=fname, number=number,
                              label=3 if repeated else 1)
            if ftype in ("uint64", "string"):
                f.type = {"uint64": 4, "string": 9}[ftype]
            else:
                f.type = 11
                f.type_name = "." + "io.containerd.cgroups.v1." + ftype
    runc = descriptor_pb2.FileDescriptorProto(name="pallet_test_runc.proto",
                                              package="containerd.runc.v1", syntax="proto3")
    opts = runc.message_type.add(name="Options")
    for number, fname, ftype in ((1, "no_pivot_root", 8), (2, "no_new_keyring", 8),
                                 (3, "shim_cgroup", 9), (4, "io_uid", 13), (5, "io_gid", 13),
                                 (6, "binary_name", 9), (7, "root", 9), (8, "criu_path", 9),
                                 (9, "systemd_cgroup", 8), (10, "criu_image_path", 9),
                                 (11, "criu_work_path", 9)):
        opts.field.add(name=fname, number=number, label=1, type=ftype)
    details = runc.message_type.add(name="ProcessDetails")
    details.field.add(name="exec_id", number=1, label=1, type=9)
    pool.Add(fdp)
    pool.Add(runc)
    classes = {}
    for full in list(out) + ["containerd.runc.v1.Options", "containerd.runc.v1.ProcessDetails"]:
        classes[full] = message_factory.GetMessageClass(pool.FindMessageTypeByName(full))
    return classes


def _parse(text: str, package: str):
    import re

    for name, body in re.findall(r"message (\w+) \{(.*?)\}", text, re.S):
        fields = []
        for rep, ftype, fname, number in re.findall(r"(repeated )?(\w+) (\w+) = (\d+);", body):
            fields.append((int(number), fname, ftype, bool(rep)))
        yield f"{package}.{name}", fields


GENERATED.update(_runtime_classes())

DECLARED = [getattr(m, n) for n in dir(m)
            if isinstance(getattr(m, n), type) and issubclass(getattr(m, n), pbwire.Message)
            and getattr(m, n) is not pbwire.Message]


def _value(kind, rng, depth=0):
    if isinstance(kind, type):
        return _fill(kind, rng, depth + 1)
    if kind == "string":
        return rng.choice(["", "x", "/run/ünïcode", "a" * 200])
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "enum":
        return rng.choice([0, 1, 2, 3, 4, 5])
    if kind == "uint32":
        return rng.choice([0, 1, 127, 128, 300, 2**32 - 1])
    if kind == "uint64":
        return rng.choice([0, 1, 2**33, 2**64 - 1])
    if kind == "int32":
        return rng.choice([0, 5, 2**31 - 1])
    if kind == "int64":
        return rng.choice([0, 1, -1, 2**40, -(2**40)])
    if kind == "map":
        return {f"k{i}": f"v{i}" for i in range(rng.randrange(3))}
    raise AssertionError(kind)


def _fill(cls, rng, depth=0):
    values = {}
    for _num, name, kind, repeated in cls.FIELDS:
        if depth > 3 and isinstance(kind, type):
            continue
        if repeated:
            values[name] = [_value(kind, rng, depth) for _ in range(rng.randrange(3))]
        elif kind == "map" or not isinstance(kind, type) or rng.random() < 0.8:
            values[name] = _value(kind, rng, depth)
    return cls(**values)


def _to_generated(msg):
    gen = GENERATED[msg.NAME]()
    for _num, name, kind, repeated in msg.FIELDS:
        v = getattr(msg, name)
        if isinstance(kind, type):
            if repeated:
                for x in v:
                    getattr(gen, name).append(_to_generated(x))
            elif v is not None:
                getattr(gen, name).CopyFrom(_to_generated(v))
        elif kind == "map":
            getattr(gen, name).update(v)
        elif repeated:
            getattr(gen, name).extend(v)
        else:
            setattr(gen, name, v)
    return gen


@pytest.mark.parametrize("cls", DECLARED, ids=lambda c: c.NAME)
def test_declared_message_matches_generated(cls):
    gen_cls = GENERATED[cls.NAME]
    ours = {(n, name) for n, name, _k, _r in cls.FIELDS}
    theirs = {(f.number, f.name) for f in gen_cls.DESCRIPTOR.fields}
    if cls.NAME == "io.containerd.cgroups.v1.Metrics":
        theirs = {t for t in theirs if t[1] not in ("rdma", "network", "cgroup_stats")}
    assert ours == theirs
    rng = random.Random(cls.NAME)
    for _ in range(25):
        msg = _fill(cls, rng)
        gen = _to_generated(msg)
        data = msg.encode()
        # same bytes as protobuf (deterministic for maps: compare parsed forms)
        assert gen_cls.FromString(data) == gen
        if not any(k == "map" for _n, _name, k, _r in cls.FIELDS):
            assert data == gen.SerializeToString(deterministic=True)
        assert cls.decode(gen.SerializeToString()) == msg


def test_unknown_fields_are_skipped_and_garbage_refused():
    gen = shim_pb2.StateResponse(id="a", pid=3)
    data = gen.SerializeToString() + b"\xa0\x06\x05"  # field 100, varint 5
    assert m.StateResponse.decode(data).pid == 3
    with pytest.raises(pbwire.DecodeError):
        m.StateResponse.decode(b"\x0a\x10abc")
    with pytest.raises(pbwire.DecodeError):
        m.StateResponse.decode(b"\x18")


def test_timestamp_helper():
    ts = pbwire.timestamp(1_700_000_000_123_456_789)
    assert (ts.seconds, ts.nanos) == (1_700_000_000, 123_456_789)
    assert pbwire.timestamp(0).encode() == b""
