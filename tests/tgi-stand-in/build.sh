#!/usr/bin/env bash
# Build the tgi-stand-in image against the lab's dockerd and save it as the tarball the tgi role loads.
#   DOCKER_HOST=unix://$PWD/.lab/docker/docker.sock tests/tgi-stand-in/build.sh [OUT_DIR]
# Writes OUT_DIR/tgi-stand-in.tar, .tar.sha256 (sha256sum's line, which the tgi role checks on the host
# before `docker load`) and .tar.id (written last: a complete set). Prints the image reference, the tarball,
# its sha256 and the image id (tgi_image, tgi_image_archive, tgi_image_archive_sha256, tgi_image_id).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/.cache/artefacts/images}"
tag="${TGI_STAND_IN_TAG:-localhost/tgi-stand-in:3.3.6-stand-in}"
mkdir -p "$out"
docker build --quiet --tag "$tag" "$here" >/dev/null
id="$(docker image inspect --format '{{.Id}}' "$tag")"
tar="$out/tgi-stand-in.tar"
if [ ! -f "$tar.id" ] || [ "$(cat "$tar.id")" != "$id" ] || [ ! -f "$tar" ]; then
  rm -f "$tar.id"
  docker save --output "$tar.tmp" "$tag"
  mv "$tar.tmp" "$tar"
  rm -f "$tar.sha256"
fi
if [ ! -f "$tar.sha256" ]; then
  (cd "$out" && sha256sum "$(basename "$tar")") > "$tar.sha256.tmp"
  mv "$tar.sha256.tmp" "$tar.sha256"
fi
[ -f "$tar.id" ] || echo "$id" > "$tar.id"
echo "tgi_image: $tag"
echo "tgi_image_archive: $tar"
echo "tgi_image_archive_sha256: $(cut -d' ' -f1 "$tar.sha256")"
echo "tgi_image_id: $id"
