"""kopf wiring: events in, plans out. Handlers parse, gather observations, call the
core, and hand the plan to the shell; they decide nothing themselves.

Importing :mod:`alm.handlers.wiring` registers every handler in
:data:`alm.handlers.registry.REGISTRY`.
"""
