"""Make `ansible_collections.onprem.llm_serving` importable from the checkout.

tools/setup.sh links this checkout as .cache/collections/ansible_collections/onprem/llm_serving.
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
