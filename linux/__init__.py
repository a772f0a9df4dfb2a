"""Low-level Linux bindings shared by the plugins that need them.

Neither the core (which stays free of Linux specifics) nor one role's plugin:
the runtime, the shim and the image store each mount things, and a user may
swap any of them for another, so what they share lives here.
"""
