#!/usr/bin/env bash
# Chromium for the report's browser test (`make test-slow`): Debian's package, installed once.
# Without root or apt-get it says what to install and the test skips itself.
set -euo pipefail

for b in "${ZELO_CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$b" ] && command -v "$b" >/dev/null 2>&1; then
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-browser: no apt-get here; install Chromium yourself (or set ZELO_CHROMIUM) for the browser test" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "setup-browser: not root and no passwordless sudo; run: sudo apt-get install chromium" >&2
    exit 0
  fi
fi
echo "setup-browser: installing Debian's chromium (once)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
