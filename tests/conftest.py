"""Suite-wide settings that must be in place before the operator's modules load."""

from __future__ import annotations

import os

# kopf fixes timer intervals at import time: resync every second in tests so that
# "recovers by itself" and "a resync writes nothing" are observable within seconds.
os.environ.setdefault("ALM_RESYNC_SECONDS", "1")
