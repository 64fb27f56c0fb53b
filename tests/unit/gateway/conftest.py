"""Make the gateway test helpers importable by their module names."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
