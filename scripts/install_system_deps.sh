#!/usr/bin/env bash
# Installs the Debian packages the project needs (espeak-ng for the synthetic corpus).
# Idempotent: does nothing when every tool is already on PATH.
set -euo pipefail

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
# Optional extras are named by the caller, e.g. EXTRA_APT="chromium".
for pkg in ${EXTRA_APT:-}; do
    command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "error: missing system packages: ${missing[*]}" >&2
    echo "run as root:  $cmd" >&2
    exit 1
fi
