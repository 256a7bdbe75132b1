#!/usr/bin/env bash
# The README's test command: set up .venv, make sure headless Chromium is there for the
# browser test, run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
# Debian packages the tests use: chromium (+ a font) for the lineage page in a real browser,
# graphviz to check that the DOT export parses.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
if [ ${#missing[@]} -gt 0 ] && [ -x /usr/bin/apt-get ] && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "setup: could not install ${missing[*]}; the tests that need them will say so"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
