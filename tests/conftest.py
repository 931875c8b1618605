from __future__ import annotations

import sys
from pathlib import Path

# Tests import the helpers module by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))
