#!/usr/bin/env bash
# Run the test suite on a fresh machine: installs the Python test dependencies and, for the
# config page's browser tests, Debian's Chromium (Playwright's own browser download is not used);
# for the Codex CLI test, npm. The Agents SDK test makes its own virtualenv (tests/.clients/).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k routing`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian's chromium for the browser tests..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! command -v npm >/dev/null 2>&1; then
  # Codex CLI (tests/test_responses_clients.py) is installed with npm on first use.
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian's nodejs and npm for the Codex CLI test..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi

exec python3 -m pytest "$@"
