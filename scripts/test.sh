#!/usr/bin/env bash
# Run the test suite on a fresh machine: installs the Python test dependencies and, for the
# config page's browser tests, Debian's Chromium (Playwright's own browser download is not used);
# Redis, PostgreSQL and npm. The Agents SDK test makes its own virtualenv (tests/.clients/).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k routing`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# Debian packages the tests use: Chromium for the config page, real Redis and PostgreSQL
# servers for the §8 store tests (the tests start their own servers on loopback), npm for the
# Codex CLI test (tests/test_responses_clients.py installs @openai/codex with it on first use).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages for the tests: ${missing[*]}..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

exec python3 -m pytest "$@"
