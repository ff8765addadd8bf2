"""End-to-end tests: the CLI and the HTTP API of a real ``omnirelay serve`` process."""
