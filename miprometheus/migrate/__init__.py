"""Coming from the original MI-Prometheus: ``mip migrate`` converts its configs and grid files.

``original`` reads files as the original read them (comma-separated ``default_configs`` relative to the directory
it ran in, the first listed file winning), ``tables`` holds what its names and keys are here, ``convert`` is the
one converter, ``report`` what it did, and ``command`` the command and the original's entry points.
"""
