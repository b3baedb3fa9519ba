import sys
from pathlib import Path

# Test-only components live in tests/support; worker processes inherit sys.path (spawn).
SUPPORT = str(Path(__file__).parent / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)
