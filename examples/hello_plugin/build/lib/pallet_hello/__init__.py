"""An example third-party pallet plugin (see plugin.py)."""
