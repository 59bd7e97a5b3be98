#!/usr/bin/env bash
# Set up .venv/ (idempotent) and start the server on the embedded offline defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/voice serve "$@"
