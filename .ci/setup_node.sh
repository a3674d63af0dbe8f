#!/usr/bin/env bash
# CI helper: the Node TF.js runner (and Chromium for the slow browser test).
#   .ci/setup_node.sh            npm ci in rnnedge/runtime/node (pure @tensorflow/tfjs 4.22.x)
#   .ci/setup_node.sh --browser  ... and Debian chromium for tests/test_tfjs_browser.py
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runner="$here/rnnedge/runtime/node"

if ! command -v node >/dev/null 2>&1; then
  echo "node not found: installing Debian nodejs + npm" >&2
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 18 ]; then
  echo "Node.js >= 18 is needed for @tensorflow/tfjs 4.22 (found $(node --version))" >&2
  exit 1
fi
# --ignore-scripts: core-js's postinstall only prints a banner; nothing here needs a build step
npm ci --prefix "$runner" --no-audit --no-fund --ignore-scripts
node "$runner/run.js" --version

if [ "${1:-}" = "--browser" ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium
  fi
  chromium --version
fi
