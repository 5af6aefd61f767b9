# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Install into this venv, alone and hash-checked, the uv that the wheelhouse lock pins (vllm_installer: uv).

Run by roles/vllm/tasks/install_venv_build.yml as `<venv>/bin/python -c <this file> LOCK FIND_LINKS [TRUSTED_HOST]`: nothing
is copied to the host. TRUSTED_HOST (vllm_validate_certs: false with a mirror) is the mirror's host, whose TLS
certificate pip then does not check, as the role's download of the lock does not. pip installs the lock's `uv==X
--hash=sha256:...` entry with --no-index --no-deps --require-hashes, so uv comes from the same wheelhouse, under the
same hashes, as everything it then installs (the lock keeps uv in the venv: pip, when chosen, installs it too). The
venv's own pip when it has one; a venv made without pip (the role's, for uv) gets pip run from the interpreter's own pip
wheel (Debian's python3-pip-whl, which python3-venv depends on, or ensurepip's bundled one), nothing of pip is
installed. A lock without uv fails here, naming the lock and both fixes."""
import glob
import importlib.util
import os
import re
import subprocess
import sys
import tempfile


def pip_command():
    """How to run pip for this venv: its own, or the interpreter's pip wheel run in place (`python pip.whl/pip`)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    import ensurepip  # pylint: disable=import-outside-toplevel
    places = ["/usr/share/python-wheels", os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")]
    wheels = [path for place in places for path in sorted(glob.glob(os.path.join(place, "pip-*-py3-none-any.whl")))]
    if not wheels:
        sys.exit("the venv %s has no pip, and no pip wheel is in %s: install python3-venv (it brings python3-pip-whl)"
                 % (sys.prefix, " or ".join(places)))
    return [sys.executable, os.path.join(wheels[0], "pip")]


LOCK, FIND_LINKS = sys.argv[1], sys.argv[2]
TRUSTED = ["--trusted-host", sys.argv[3]] if len(sys.argv) > 3 and sys.argv[3] else []
with open(LOCK, encoding="utf-8") as handle:
    JOINED = re.sub(r"\\\n", " ", handle.read())
ENTRY = [line.split("#", 1)[0].strip() for line in JOINED.splitlines()
         if re.match(r"\s*uv==\S+\s+--hash=sha256:[0-9a-f]{64}", line, re.IGNORECASE)]
if not ENTRY:
    sys.exit("vllm_installer is uv, but %s pins no uv (a line `uv==<version> --hash=sha256:<digest>`): put uv, hash-pinned, "
             "in the wheelhouse lock (tools/artefacts.py does for the lab's), or set vllm_installer: pip" % LOCK)
with tempfile.NamedTemporaryFile("w", suffix="-uv.txt") as requirement:
    requirement.write(ENTRY[0] + "\n")
    requirement.flush()
    sys.exit(subprocess.call(pip_command() + ["--isolated", "--disable-pip-version-check", "install", "--quiet", "--no-index",
                                              "--no-deps", "--require-hashes", "--find-links", FIND_LINKS, "-r", requirement.name] + TRUSTED))
