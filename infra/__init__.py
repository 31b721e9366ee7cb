"""The kefu CDK app (Python).

Importing this package puts the domain layer (layers/domain/python) on sys.path so
that ``from kefu import schema`` works for the app and its tests: the stack is built
from that module, the one source of truth for tables, indexes, functions and routes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_PYTHON = ROOT / "layers" / "domain" / "python"

if str(DOMAIN_PYTHON) not in sys.path:
    sys.path.insert(0, str(DOMAIN_PYTHON))
