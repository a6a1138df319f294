# Shared by scripts/run and scripts/test: system packages and the project venv.
# Sourced, not run. Idempotent: installs only what is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

apt_install() {
  local need=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  ((${#need[@]})) || return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "missing system packages: ${need[*]} (run as root or install them)" >&2; return 1; }
    sudo="sudo"
  fi
  echo "apt: installing ${need[*]}"
  timeout 300 $sudo apt-get update -qq
  timeout 900 $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

venv_ready() {
  # $1: pip extras spec, e.g. ".[test]" or "."
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  [ -x .venv/bin/python ] || python3 -m venv .venv
  timeout 900 .venv/bin/pip install -q -e "$1"
}
