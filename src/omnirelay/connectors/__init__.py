"""The connectors: one package per provider protocol, the contract they share (:mod:`.base`), the skeletons of
the HTTP connectors and webhook receivers (:mod:`.http`, :mod:`.webhooks`, :mod:`.meta`), and the list the
gateway builds them from (:mod:`.registry`)."""
