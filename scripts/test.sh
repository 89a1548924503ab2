#!/usr/bin/env bash
# Run the test suite on a fresh machine: installs the Python test dependencies and, for the
# config page's browser tests, Debian's Chromium (Playwright's own browser download is not used),
# and npm (Claude Code for its test is fetched from the npm registry on first run).
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

# npm installs Claude Code for tests/test_claude_code.py (into ~/.cache/openai-style-api).
if ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian's npm for the Claude Code test..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
fi

exec python3 -m pytest "$@"
