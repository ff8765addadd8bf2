"""What the benchmarks share, one module per concept:

* :mod:`bench.lib.machine`: what a figure was measured on, how busy the machine is, CPU and memory of a process;
* :mod:`bench.lib.gateway`: the benchmark account, its config, starting ``omnirelay`` and waiting for it;
* :mod:`bench.lib.load`: the accept-path load generators (wrk, ``bench/openloop.py``, aiohttp) and their summary;
* :mod:`bench.lib.traffic`: end-to-end traffic (messages sent, reports pulled) and its per-message timings;
* :mod:`bench.lib.fill`: a large store filled directly with one account's finished messages;
* :mod:`bench.lib.pg`: throw-away PostgreSQL databases, and a primary with its synchronous standby (also used by
  ``tests/e2e/test_postgres_ha.py``).
"""
