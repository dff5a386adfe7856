#!/usr/bin/env bash
# Install Debian's chromium for the dashboard's browser tests when it is missing.
# Playwright drives this binary (executable_path); `playwright install` is never used.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
echo "[test-services] installing chromium (dashboard browser tests)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium >/dev/null
