#!/usr/bin/env bash
# Smoke check of the Docker-less local runtime: up -> deploy -> exercise every wiring -> down.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
stack="$here/../stack"

finish() {
  status=$?
  "$stack" down || status=1
  if pgrep -f "$repo/.local/venvs/.*awslambdaric" >/dev/null; then
    echo "SMOKE CHECK FAILED: handler processes left behind:" >&2
    pgrep -af "$repo/.local/venvs/.*awslambdaric" >&2
    status=1
  fi
  exit "$status"
}

start=$(date +%s)
"$stack" install
echo "install (or up-to-date check): $(( $(date +%s) - start )) s"
trap finish EXIT
"$repo/.local/venvs/tools/bin/python" "$here/check.py"
