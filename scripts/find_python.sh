#!/usr/bin/env bash
# Usage: scripts/find_python.sh 3.12  — prints the path of a working python3.12, or one line saying it is missing.
# Looks at PATH first (a pyenv shim counts only if it runs), then pyenv's versions, then /usr/bin.
set -u
want=${1:?usage: find_python.sh MAJOR.MINOR}
works() { "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" 2>/dev/null; }
candidates=()
found=$(command -v "python$want" 2>/dev/null) && candidates+=("$found")
root=${PYENV_ROOT:-$HOME/.pyenv}
for dir in $(ls -d "$root/versions/$want".* 2>/dev/null | sort -V -r); do candidates+=("$dir/bin/python$want"); done
candidates+=("/usr/bin/python$want" "/usr/local/bin/python$want")
for python in "${candidates[@]}"; do
  if [ -x "$python" ] && works "$python"; then
    "$python" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
echo "Python $want not found (looked for python$want on PATH, in $root/versions/$want.*, /usr/bin, /usr/local/bin): install it (e.g. pyenv install $want) or pass PYTHON=/path/to/python$want" >&2
exit 1
