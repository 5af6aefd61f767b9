# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""versions.yml is the one place for every engine version, image tag and archive pin.

    tools/versions.py --check    exit 1 when a role default (defaults/main.yml, meta/argument_specs.yml) disagrees
    tools/versions.py --write    rewrite those defaults from versions.yml (then tools/role_docs.py for the READMEs)

The lab inventory and tools/artefacts.py read versions.yml directly.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path=os.path.join(ROOT, "versions.yml")):
    with open(path) as fh:
        return yaml.safe_load(fh)


def role_of(variable):
    """The role a public variable belongs to: the longest role name it starts with."""
    roles = sorted((os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, "roles", "*", "defaults"))),
                   key=len, reverse=True)
    for role in roles:
        if variable.startswith(role + "_"):
            return role
    raise SystemExit("versions.yml: %s belongs to no role (roles: %s)" % (variable, ", ".join(roles)))


def places(variable):
    """The files that pin ``variable`` and the regex of its line in each (group 2 is the value)."""
    role = role_of(variable)
    base = os.path.join(ROOT, "roles", role)
    return [
        (os.path.join(base, "defaults", "main.yml"), re.compile(r"^(%s: )(.*)$" % re.escape(variable), re.M)),
        (os.path.join(base, "meta", "argument_specs.yml"),
         re.compile(r"^(      %s:\n(?:        .*\n)*?        default: )(.*)$" % re.escape(variable), re.M)),
    ]


def scalar(value):
    """How the pin is written in YAML: quoted when a bare value would not stay a string."""
    text = str(value)
    return '"%s"' % text if re.match(r"^[0-9.]+(-[0-9]+)?$", text) else text


def check(write=False):
    problems = []
    for variable, value in load()["roles"].items():
        for path, pattern in places(variable):
            text = open(path).read()
            match = pattern.search(text)
            if not match:
                problems.append("%s: no default for %s" % (os.path.relpath(path, ROOT), variable))
                continue
            current = yaml.safe_load(match.group(2))
            if str(current) == str(value):
                continue
            if write:
                text = text[:match.start(2)] + scalar(value) + text[match.end(2):]
                with open(path, "w") as fh:
                    fh.write(text)
                print("updated %s: %s = %s" % (os.path.relpath(path, ROOT), variable, value))
            else:
                problems.append("%s: %s is %r, versions.yml says %r (run tools/versions.py --write)"
                                % (os.path.relpath(path, ROOT), variable, current, value))
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true")
    group.add_argument("--write", action="store_true")
    args = parser.parse_args()
    problems = check(write=args.write)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
