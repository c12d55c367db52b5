#!/usr/bin/env bash
# Makes sure a Chromium for the portal's browser test is installed: Debian's
# chromium package (no browser downloads). Prints the binary's path.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if p=$(command -v "$name"); then echo "$p"; exit 0; fi
done
if [[ $(id -u) -ne 0 ]]; then
  echo "Chromium not found. Install it (Debian/Ubuntu: sudo apt-get install chromium) or set CHROMIUM." >&2
  exit 1
fi
echo "installing Debian's chromium package (one time)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq chromium >&2
command -v chromium
