#!/usr/bin/env bash
# Install Debian's Chromium (+ chromedriver) for the end-to-end browser tests (tests/test_browser.py).
#
# Idempotent and never fatal: if Chromium cannot be installed (no apt, no root and no sudo, no
# network), it prints a warning and exits 0 -- the browser tests then skip with a clear message.
# The Python driver (playwright, from the ".[test]" extra) never downloads a browser: the tests
# launch this system Chromium (/usr/bin/chromium; override with EDUDIFF_CHROMIUM=/path/to/chrome).
set -u

warn() { echo "install_browser.sh: WARNING: $*; the browser tests will be skipped." >&2; }

for exe in "${EDUDIFF_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser \
           "$(command -v google-chrome 2>/dev/null || true)" "$(command -v google-chrome-stable 2>/dev/null || true)"; do
  if [ -n "$exe" ] && [ -x "$exe" ]; then
    echo "install_browser.sh: Chromium already present: $exe ($("$exe" --version 2>/dev/null | head -n1))"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  warn "apt-get not found (not a Debian/Ubuntu machine); install Chromium yourself and set EDUDIFF_CHROMIUM"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  warn "not root and no password-less sudo, cannot apt-get install chromium"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -y -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300
          -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

echo "install_browser.sh: apt-get install chromium chromium-driver ..."
if ! ${SUDO[@]+"${SUDO[@]}"} apt-get "${apt_opts[@]}" update >/dev/null; then
  warn "apt-get update failed"
  exit 0
fi
# Debian names the package chromium; Ubuntu's chromium-browser is a snap shim that does not work in
# containers, so only Debian's package is tried.
if ! ${SUDO[@]+"${SUDO[@]}"} apt-get "${apt_opts[@]}" install --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null; then
  warn "apt-get install chromium chromium-driver failed"
  exit 0
fi

if [ -x /usr/bin/chromium ]; then
  echo "install_browser.sh: installed $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
else
  warn "apt-get succeeded but /usr/bin/chromium is missing"
fi
exit 0
