"""The benchmarks: each ``bench/<name>.py`` is run as ``python3 -m bench.<name>`` from the repository's root, and
``python3 -m bench`` (or ``bench/run``) runs them all and writes BENCHMARKS.md. What several of them share (the
machine's figures, starting the gateway, load generators, PostgreSQL databases) is in :mod:`bench.lib`."""
