#!/usr/bin/env bash
# Sourced by ci.sh and bench.sh: installs the pinned npm toolchain (forge, anvil, cast, solcjs,
# OpenZeppelin) unless node_modules already matches package-lock.json, then puts it on PATH.
set -euo pipefail

stamp=node_modules/.sosna-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "==> npm ci (node_modules missing or stale)"
    npm ci --no-audit --no-fund
    echo "$want" >"$stamp"
fi
export PATH="$PWD/node_modules/.bin:$PATH"
