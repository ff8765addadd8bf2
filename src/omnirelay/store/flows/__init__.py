"""The store's flows, one module per area; see :mod:`omnirelay.store.flow` for how a flow runs."""
