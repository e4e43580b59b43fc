"""Command-line entry points: ``alm`` (operator, CRDs, sandbox) and ``kubectl-alm``."""
