#!/usr/bin/env bash
# CI stage: the real VS Code test on the fixture kernel. Copies the fixture source tree and patches
# into a temporary workspace (so the editor never writes into the checkout), points klp-lsp at the
# fixture vmlinux with a fresh index, then runs setup.sh and run.sh, all under `timeout 600`.
# Two sessions: the fixture checks, then a server command that cannot start (its artifacts in
# test-artifacts/vscode/start-failure/). Screenshots, results.json and logs are left in
# test-artifacts/vscode/. Exits non-zero on failure.
# Extra arguments and KLP_E2E_* variables (e.g. KLP_E2E_UPDATE_SCREENSHOT=1) pass through to run.sh.
set -euo pipefail

if [[ -z "${KLP_E2E_CI_UNDER_TIMEOUT:-}" ]]; then
    KLP_E2E_CI_UNDER_TIMEOUT=1 exec timeout --kill-after=10 600 bash "$0" "$@"
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
FIXTURES="$REPO/tests/fixtures"
log() { printf '[ci] %s\n' "$*" >&2; }

WORKSPACE="$(mktemp -d "${TMPDIR:-/tmp}/klp-vscode-ws.XXXXXX")"
INDEX_DIR="$(mktemp -d "${TMPDIR:-/tmp}/klp-vscode-index.XXXXXX")"
trap 'rm -rf "$WORKSPACE" "$INDEX_DIR"' EXIT
trap 'exit 143' TERM INT

# The workspace is the fixture kernel's source tree (its DWARF names /usr/src/linux-klp-demo, so
# klp-lsp.sourceRoot says where it really is) with the demo patches beside it.
cp -r "$FIXTURES/kernel/." "$WORKSPACE/"
mkdir -p "$WORKSPACE/patches"
cp "$FIXTURES/patches/demo.patch" "$FIXTURES/patches/clean.patch" "$FIXTURES/patches/pitfalls.mbox" \
    "$WORKSPACE/patches/"

start=$SECONDS
bash "$HERE/setup.sh"
log "setup took $((SECONDS - start)) s"

export KLP_E2E_WORKSPACE="$WORKSPACE"
export KLP_E2E_PATCH="patches/demo.patch"
export KLP_E2E_CFILE="kernel/demo_core.c"
export KLP_E2E_BINARY="$FIXTURES/build/x86_64/vmlinux"
export KLP_E2E_SOURCE_ROOT="$WORKSPACE"
export KLP_E2E_INDEX_DIR="$INDEX_DIR"
# demo_lib_step's CU is built without ftrace flags: its card leads with that verdict.
export KLP_E2E_HOVER_WORD="${KLP_E2E_HOVER_WORD:-demo_lib_step}"
export KLP_E2E_HOVER_EXPECT="${KLP_E2E_HOVER_EXPECT:-NOT patchable}"
# The squiggle checked first is the not-patchable error on demo_account.
export KLP_E2E_SQUIGGLE_EXPECT="${KLP_E2E_SQUIGGLE_EXPECT:-not-patchable}"
export KLP_E2E_SKELETON_EXPECT="${KLP_E2E_SKELETON_EXPECT:-struct klp_patch}"
# The server of this checkout, whatever `klp-lsp` the editor's login-shell PATH would find (on a
# shared machine that may be another checkout's).
PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
export KLP_E2E_SERVER_COMMAND="${KLP_E2E_SERVER_COMMAND:-[\"$PYTHON\", \"-m\", \"klp_lsp\", \"serve\"]}"
# What each patch must show: its lenses (summary first), the hover at the start of its first
# diagnostic, and its outline (Go to Symbol in Editor). Facts: tests/fixtures/README.md.
KLP_E2E_PATCH_CHECKS="$(cat "$HERE/fixture-patch-checks.json")"
export KLP_E2E_PATCH_CHECKS

session=$SECONDS
bash "$HERE/run.sh" "$@"
log "session took $((SECONDS - session)) s"

# A server command that cannot start: an error with Show Logs, and the status bar says so. It
# takes about 35 s; a fresh machine spends about 330 s in setup.sh, so keep it inside the budget.
if ((SECONDS - start > 520)); then
    log "skipping the start-failure session: $((SECONDS - start)) s of the 600 s budget used"
    exit 0
fi
session=$SECONDS
KLP_E2E_EXPECT_START_FAILURE=1 KLP_E2E_SERVER_COMMAND='["/nonexistent/klp-lsp", "serve"]' \
    KLP_E2E_UPDATE_SCREENSHOT=0 KLP_E2E_UPDATE_DOCS=0 KLP_E2E_ARTIFACTS_DIR="$REPO/test-artifacts/vscode/start-failure" \
    bash "$HERE/run.sh"
log "start-failure session took $((SECONDS - session)) s; total $((SECONDS - start)) s"
