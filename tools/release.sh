#!/usr/bin/env bash
# (Re)generate the release notes for the version in galaxy.yml, in one command:
#   tools/release.sh
# Lints the fragments in changelogs/fragments/, records under that version every fragment that no
# earlier release holds (re-reading the ones it already holds, so edits show), picks up modules
# whose version_added is that version, and rewrites changelogs/changelog.yaml and CHANGELOG.rst.
# Safe to re-run after more fragments land: it updates the same release. Fragments stay in place
# (changelogs/config.yaml keep_fragments: true); the Galaxy tarball leaves them out.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$PWD/.venv}
export PATH="$VENV/bin:$PATH"
version=$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
antsibull-changelog lint
antsibull-changelog release --version "$version" --reload-plugins \
  --refresh-fragments without-archives --update-existing
echo "release: changelogs/changelog.yaml and CHANGELOG.rst describe $version"
