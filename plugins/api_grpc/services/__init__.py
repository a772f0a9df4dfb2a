"""containerd's v1 gRPC services, one module each: thin translators between
protobuf messages and pallet-containerd's service layer (:class:`Backend`)."""
