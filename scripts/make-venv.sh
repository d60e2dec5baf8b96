#!/usr/bin/env bash
# Make the virtual environment everything installs into (see the Makefile for why).
# Usage: make-venv.sh PYTHON VENV_DIR
set -euo pipefail
python="$1"
venv="$2"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "no $python on PATH: install Python 3.11 or newer (Debian: sudo apt-get install -y python3 python3-venv)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "healthwatch needs Python 3.11 or newer; $python is $("$python" -V 2>&1): run make with BOOTSTRAP_PYTHON=python3.11 (or newer)" >&2
  exit 1
fi
# Debian ships venv's pip bootstrap (ensurepip) as a package of its own.
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing python3-venv with apt (Debian's Python ships venv separately)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "Python's venv module is missing: run 'sudo apt-get install -y python3-venv', then make again" >&2
    exit 1
  fi
fi
echo "creating the virtual environment $venv with $("$python" -V 2>&1); to use its commands yourself: . $venv/bin/activate"
"$python" -m venv "$venv"
