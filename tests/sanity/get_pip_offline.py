# Local stand-in for ansible-test's pip bootstrap script (https://ci-files.testing.ansible.com/ansible-test/get-pip-24.2.py),
# which is not reachable from this project's machines. It bootstraps pip from the interpreter's bundled
# ensurepip wheel, then lets that pip install what ansible-test asked for (pip==24.2 and friends) from PyPI.
# tests/run_all.py installs it as ~/.ansible/test/cache/get_pip_24_2.py when that file is missing.
from __future__ import annotations

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]))
