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


try:
    import pytest
    from ansible.module_utils.common import warnings as _module_warnings
except ImportError:  # the release tools' tests run without ansible-core
    pytest = None


if pytest is not None:
    @pytest.fixture(autouse=True)
    def _module_warnings_per_test():
        """Modules run in-process in the unit tests: their warnings and deprecations go to process-wide lists that only a
        module's exit in its own process ends. Each test starts with empty lists, so one test's warning never reaches the
        next module run (the test order decided whether an assertion on ``warnings`` passed)."""
        # pylint: disable=protected-access
        _module_warnings._global_warnings.clear()
        _module_warnings._global_deprecations.clear()
        yield
