"""Real protocol peers that the tests and the benchmarks run beside the gateway (the SMSC on node-smpp)."""
