"""The sandbox (:mod:`.connector`): every OMNI channel answered by rules, without I/O. It is not in the
registry: the gateway always runs it, for the channels no real connector serves."""
