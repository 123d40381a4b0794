#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (Playwright's own browser download cannot be used
# here): install it when /usr/bin/chromium is missing. Needs root (as on CI and dev machines).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "warning: the browser tests need Chromium: sudo apt-get install -y chromium" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
