# Sourced by scripts/demo and scripts/test: make .venv (if missing) and
# install zskill into it. $1: the pip extras to install ("" or "[dev]").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "zskill needs Python 3.11 or newer ($PY is $("$PY" --version 2>&1)); set PYTHON=..." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=".venv/.installed$1"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing zskill$1 into .venv" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".$1"
  touch "$stamp"
fi
