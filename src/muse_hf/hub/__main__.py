"""``python -m muse_hf.hub {card,push,space} ...``: the same as ``muse-hf card|push|space ...``."""

import sys

from muse_hf.cli import hub_main

sys.exit(hub_main())
