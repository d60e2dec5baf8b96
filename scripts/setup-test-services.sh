#!/usr/bin/env bash
# What the test suite needs beyond Python packages: a PostgreSQL server, Java 17+ and
# Maven (to fetch the Apache Kafka broker jars from Maven Central, cached after the
# first run). Installs with apt when missing and running as root.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
# A real Prometheus server and promtool (tests/integration/test_prometheus.py).
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need_apt+=(prometheus)
# Headless Chromium and its driver for the dashboard's browser tests (tests/browser/).
{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
# Pango for the reports' PDFs (WeasyPrint; the CJK font below serves their Chinese too).
/sbin/ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0' || need_apt+=(libpango-1.0-0 libpangoft2-1.0-0)
# A CJK font, so the Chinese pages' screenshots show Han characters, not boxes
# (tests/browser/test_languages.py checks the glyphs).
[ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need_apt+=(fonts-noto-cjk)
# devservices is installed by `pip install -e '.[dev]'`, which `make setup` runs first,
# with the same interpreter (the Makefile passes PYTHON).
python="${PYTHON:-python3}"
if ! "$python" -c 'import devservices' 2>/dev/null; then
  echo "devservices is not importable by $python: run '$python -m pip install -e .[dev]' first" >&2
  exit 1
fi
if ! "$python" -c 'import sys, devservices; sys.exit(0 if devservices.find_postgres_bindir() else 1)'
then
  need_apt+=(postgresql)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need_apt[*]} — run: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  echo "installing ${need_apt[*]} with apt" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
cd "$here"
"$python" -m devservices fetch-kafka
