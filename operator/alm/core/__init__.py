"""The pure core: every decision alm makes, as functions of (spec, observed state, now).

Nothing in this package reads a clock, the network or the API server (an import-linter
contract in pyproject.toml keeps it so). The kopf handlers gather observations, call a
planner here, and hand the resulting plan to :mod:`alm.kube.shell` to apply.
"""
