"""api_cri: placeholder (wired below as it grows)."""
PALLET_ROLE = None
