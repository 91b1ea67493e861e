#!/usr/bin/env bash
# Newcomer check: does the README's `make test` work on a fresh clone, with nothing from this machine's
# set-up but the system's tools and the dataset folder?
#
#   bash .ci/newcomer.sh                      # the first python3 on a minimal PATH (Debian: /usr/bin/python3)
#   bash .ci/newcomer.sh /path/to/python3.10  # another interpreter (its folder goes first on PATH)
#
# It clones the committed repository (HEAD; uncommitted changes are not included) into a temporary
# folder and runs `make test` there under `env -i` with only PATH, HOME (a new, empty folder: no pip
# cache, no Jupyter or matplotlib settings) and EDUDIFF_DATA (the dataset folder; default
# ../shared/datasets). If anything outside the clone were needed -- a package installed by hand, a
# variable, a file in the developer's home -- the run fails. Not part of CI (it installs everything
# again and takes 10-20 minutes on 2 cores); run it before closing work that touches the set-up.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${EDUDIFF_DATA:-$(cd "$repo/.." && pwd)/shared/datasets}
path=/usr/local/bin:/usr/bin:/bin
if [ $# -ge 1 ]; then path="$(cd "$(dirname "$1")" && pwd):$path"; fi
work=$(mktemp -d "${TMPDIR:-/tmp}/edudiff-newcomer.XXXXXX")
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/edudiff"
mkdir "$work/home"
python=$(env -i PATH="$path" bash -c 'command -v python3')
echo "newcomer check: fresh clone of $(git -C "$repo" rev-parse --short HEAD) in $work/edudiff, $("$python" --version) ($python)"
start=$(date +%s)
status=0
env -i PATH="$path" HOME="$work/home" EDUDIFF_DATA="$data" \
  make -C "$work/edudiff" test PYTHON="$python" || status=$?
echo "newcomer check: make test exited $status after $(( $(date +%s) - start )) s; .venv: $(du -sh "$work/edudiff/.venv" | cut -f1)"
exit $status
