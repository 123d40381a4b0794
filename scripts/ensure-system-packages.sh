#!/usr/bin/env bash
# System libraries the tests need beyond Python packages: zbar (libzbar0), which pyzbar loads to
# decode the EPC QR codes the services draw. Installed with apt-get when missing and we are
# root (CI, the development machines); otherwise says what to install.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0'; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing libzbar0 (QR decoding for the tests)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq libzbar0 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libzbar0 >/dev/null; }
  exit 0
fi
echo "warning: libzbar0 is not installed (the QR decoding tests need it): apt-get install libzbar0" >&2
