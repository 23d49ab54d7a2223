#!/usr/bin/env bash
# Contracts CI: pinned offline toolchain, format, build, bounded tests, bindings drift check,
# and a deploy smoke test against a throwaway anvil. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure-deps.sh

echo "==> forge fmt --check"
forge fmt --check

echo "==> forge build --sizes (deployable contracts; tests and scripts are never deployed)"
forge build --sizes --skip test --skip script

echo "==> forge test (fuzz 256 runs; invariants 64 runs x depth 50, see foundry.toml)"
# The gas benchmark needs --isolate and lives in bench.sh.
forge test --no-match-path 'test/bench/*'

echo "==> deploy smoke test on anvil"
tmp=$(mktemp -d)
anvil_pid=""
cleanup() {
    if [[ -n $anvil_pid ]]; then
        kill "$anvil_pid" 2>/dev/null || true
        wait "$anvil_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

port=$(node -e 'const s = require("net").createServer();
s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')
rpc="http://127.0.0.1:$port"
anvil --host 127.0.0.1 --port "$port" --config-out "$tmp/anvil.json" >"$tmp/anvil.log" 2>&1 &
anvil_pid=$!

deadline=$((SECONDS + 30))
until [[ -s $tmp/anvil.json ]] && cast chain-id --rpc-url "$rpc" >/dev/null 2>&1; do
    if ! kill -0 "$anvil_pid" 2>/dev/null; then
        echo "anvil exited:" >&2
        cat "$tmp/anvil.log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "anvil not ready on $rpc after 30s" >&2
        exit 1
    fi
    sleep 0.2
done

# Keys and accounts come from anvil's own config dump, not from constants here.
key=$(node -e 'console.log(require(process.argv[1]).private_keys[0])' "$tmp/anvil.json")
fund=$(node -e 'console.log(require(process.argv[1]).available_accounts.slice(1, 4).join(","))' \
    "$tmp/anvil.json")
deployment=deployments/ci-smoke.json
DEPLOYER_KEY=$key FUND_ACCOUNTS=$fund DEPLOYMENT_FILE=$deployment \
    forge script script/Deploy.s.sol:Deploy --rpc-url "$rpc" --broadcast --slow >"$tmp/deploy.log" 2>&1 \
    || { cat "$tmp/deploy.log" >&2; exit 1; }

chain_id=$(cast chain-id --rpc-url "$rpc")
node - "$deployment" "$chain_id" <<'JS' >"$tmp/addresses"
const [file, chainId] = process.argv.slice(2);
const d = require(require('path').resolve(file));
const keys = ['snm', 'dao', 'hubFactory', 'hubWalletImplementation', 'whitelist', 'market',
  'verification'];
if (String(d.chainId) !== chainId) throw new Error(`chainId ${d.chainId} != ${chainId}`);
for (const k of keys) {
  if (!/^0x[0-9a-fA-F]{40}$/.test(d[k] || '')) throw new Error(`bad or missing address: ${k}`);
  console.log(`${k} ${d[k]}`);
}
JS
while read -r name addr; do
    code=$(cast code "$addr" --rpc-url "$rpc")
    if [[ $code == "0x" || -z $code ]]; then
        echo "no code at $name ($addr)" >&2
        exit 1
    fi
    echo "  $name $addr: $(((${#code} - 2) / 2)) bytes"
done <"$tmp/addresses"
for acct in ${fund//,/ }; do
    bal=$(cast call "$(node -e 'console.log(require(process.argv[1]).snm)' "$PWD/$deployment")" \
        'balanceOf(address)(uint256)' "$acct" --rpc-url "$rpc")
    [[ ${bal%% *} != 0 ]] || { echo "account $acct was not funded" >&2; exit 1; }
done

echo "==> Rust bindings: selectors and topics against forge artifacts"
if command -v cargo >/dev/null; then
    (cd .. && SOSNA_CONTRACTS_OUT="$PWD/contracts/out" \
        SOSNA_DEPLOYMENT_JSON="$PWD/contracts/$deployment" cargo test -p sosna-contracts -- --include-ignored)
else
    echo "cargo not found: skipping the bindings check" >&2
fi

echo "==> bus trust flow against this anvil and deployment"
if command -v cargo >/dev/null; then
    hub_key=$(node -e 'console.log(require(process.argv[1]).private_keys[1])' "$tmp/anvil.json")
    (cd .. && SOSNA_ANVIL_RPC="$rpc" SOSNA_DEPLOYMENT_JSON="$PWD/contracts/$deployment" \
        SOSNA_ANVIL_HUB_KEY="$hub_key" cargo test -p sosna-market --test bus_trust anvil -- --ignored)
else
    echo "cargo not found: skipping the bus trust flow test" >&2
fi

echo "==> contracts CI passed"
