"""net_cni: placeholder."""
PALLET_ROLE = "network"
