"""poolkit's pytest plugin and the tools that prove pools and drivers against databases.

The plugin (:mod:`poolkit.conformance.plugin`) is registered through the ``pytest11`` entry
point, so installing poolkit is enough. Without ``--pool-conformance`` it only offers the
``fake_driver`` fixtures, and imports nothing but pytest and its options module until one is
used (``poolkit`` itself loads its names on first use).
"""
