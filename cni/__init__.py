"""The Container Network Interface, as a library: plugins executed per the CNI
specification (https://www.cni.dev/docs/spec/) over network configuration
lists read from a configuration directory.

* :mod:`.conf` reads ``.conflist``/``.conf``/``.json`` files (libcni's
  rules: sorted names, single-plugin files become one-plugin lists);
* :mod:`.invoke` finds a plugin binary in the plugin directories and runs
  it with the ``CNI_*`` environment, the configuration on stdin and the
  result (or the error object) on stdout;
* :mod:`.cache` keeps each attachment's configuration and result on disk,
  so that DEL and CHECK work after the caller restarts;
* :mod:`.network` chains the plugins of a list (``prevResult``, the
  ``runtimeConfig`` of declared capabilities; DEL in reverse order);
* :mod:`.result` reads a result (interfaces, addresses, routes, DNS).

pallet-containerd's CRI plugin (api_cri) gives pods their network through
it, and palletd's ``net_cni`` plugin fills the network role with it.
"""
