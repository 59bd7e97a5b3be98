#!/usr/bin/env bash
# Set up .venv/ with the test tools (idempotent), then lint, type-check, check the
# architecture contract, lint the Dockerfile (hadolint, from the test extra) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check voice pipelines web tests bench
.venv/bin/mypy voice pipelines web
.venv/bin/lint-imports
.venv/bin/hadolint --failure-threshold info Dockerfile
# Three pytest workers, whole modules each (module-scoped servers start once), longest
# modules first (tests/conftest.py): most tests wait on real-time audio, so three keep two
# cores busy. `bash scripts/test.sh -n 0` runs them one at a time.
exec .venv/bin/python -m pytest -q -n 3 --dist loadfile "$@"
