#!/usr/bin/env bash
# Run the test suite on a fresh machine: installs the Python test dependencies and, for the
# config page's browser tests, Debian's Chromium (Playwright's own browser download is not used);
# Redis, PostgreSQL and npm (Claude Code, Codex CLI). The Agents SDK test makes its own
# virtualenv (tests/.clients/).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k routing`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# Debian packages the tests use: Chromium for the config page, real Redis and PostgreSQL
# servers for the §8 store tests (the tests start their own servers on loopback), npm to install
# Claude Code for tests/test_claude_code.py (into ~/.cache/openai-style-api, on first run) and
# Codex CLI for tests/test_responses_clients.py (into tests/.clients/, on first run).
missing=()
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages for the tests: ${missing[*]}..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

exec python3 -m pytest "$@"
