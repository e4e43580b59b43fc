"""``python -m alm.runtime``: the same as the ``alm-agent`` console script."""

import sys

from alm.runtime import server

sys.exit(server.main())
