#!/usr/bin/env bash
# Render a report.html in headless Chromium and save a screenshot: the check that a report displays.
# Usage: scripts/render_report.sh demo_out/report.html report.png
set -euo pipefail
page=$(realpath "$1"); shot=${2:-report.png}
if ! command -v chromium >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --user-data-dir="$profile" --window-size=1200,1600 \
  --screenshot="$(realpath -m "$shot")" "file://$page" 2>/dev/null
rm -rf "$profile"
echo "screenshot: $shot"
