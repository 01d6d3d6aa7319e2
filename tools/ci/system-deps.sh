#!/usr/bin/env bash
# System tools the test suite needs beyond Python, Java and Node, from Debian's packages:
#   promtool  (package prometheus) — checks deploy/prometheus/ config, rules and rule tests
#   chromium  (package chromium)   — the browser the console's Playwright tests drive
#   a CJK font (fonts-wqy-microhei) — so the console's screenshots show its zh-CN text
# Installs only what is missing; needs root (CI runs as root) or tells you what to install.
set -euo pipefail
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "[tongxin] installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "[tongxin] not root and no sudo: install ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q -o Acquire::Retries=3 >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "[tongxin] installed: ${missing[*]}"
