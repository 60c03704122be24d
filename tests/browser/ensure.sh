#!/usr/bin/env bash
# Installs what the browser test needs when it is missing: Debian's Chromium and the Python
# Playwright driver (the system Chromium is used; Playwright never downloads a browser).
set -euo pipefail
if ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! python3 -c "import playwright.sync_api" 2>/dev/null; then
  python3 -m pip install -q "playwright>=1.40,<2"
fi
command -v chromium >/dev/null || [ -x /usr/bin/chromium ]
python3 -c "import playwright.sync_api"
