#!/usr/bin/env bash
# Installs the Debian packages the project needs (espeak-ng for the synthetic corpus; g++ and make
# for Verilator, which builds the RTL co-simulation) and, where
# it can, the optional ones named in OPTIONAL_APT (e.g. chromium for the report's browser test,
# which is skipped with its reason when chromium is absent).
# Idempotent: does nothing when every tool is already on PATH.
set -euo pipefail

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
optional=()
for pkg in ${OPTIONAL_APT:-}; do
    command -v "$pkg" >/dev/null 2>&1 || optional+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0

can_install() { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; }
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
    if ! can_install; then
        echo "error: missing system packages: ${missing[*]}" >&2
        echo "run as root:  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#optional[@]} -gt 0 ]; then
    if can_install && { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
            "${optional[@]}" >/dev/null; } 2>/dev/null; then
        echo "installed optional system packages: ${optional[*]}"
    else
        echo "note: optional packages not installed (${optional[*]}); the tests that need" \
             "them are skipped" >&2
    fi
fi
