#!/usr/bin/env bash
# The one install procedure of Lookbook: the Makefile's install rule (and so CI, through
# `make check` / `make test`) and the Dockerfile both run this script, so the image is built with
# the same commands CI tests with. Idempotent: run it again and it only checks what is there.
#
#   scripts/install.sh [--venv DIR] [--python PYTHON] [--extras LIST] [--torch-index-url URL]
#                      [--no-editable] [--torch-only]
#
#   --venv DIR             the virtual environment to create or update (default .venv)
#   --python PYTHON        the interpreter that creates it when missing (default python3)
#   --extras LIST          optional dependency groups of pyproject.toml, e.g. "dev" or "dev,bench"
#                          (default none)
#   --torch-index-url URL  where torch comes from. Default: pip's own configuration, which on the
#                          project's machines takes the local CPU wheel of the pinned version; the
#                          image passes https://download.pytorch.org/whl/cpu (the CPU build, no CUDA)
#   --no-editable          install the project into the venv (the image) instead of in place (dev)
#   --torch-only           stop after torch (the image's cached layer before the sources are copied)
#
# The torch version is read from pyproject.toml's `torch==X` pin, so it is written down once.
set -euo pipefail

venv=.venv
python=python3
extras=""
torch_index_url=""
editable=1
torch_only=0

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
	case "$1" in
	--venv) venv="$2"; shift 2 ;;
	--python) python="$2"; shift 2 ;;
	--extras) extras="$2"; shift 2 ;;
	--torch-index-url) torch_index_url="$2"; shift 2 ;;
	--no-editable) editable=0; shift ;;
	--torch-only) torch_only=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
pin="$(grep -oE '"torch==[^"]+"' "$root/pyproject.toml" | tr -d '"' || true)"
if [[ -z "$pin" ]]; then
	echo "install.sh: pyproject.toml has no \"torch==X\" pin" >&2
	exit 2
fi

if [[ ! -x "$venv/bin/python" ]]; then
	echo "install.sh: creating $venv with $python"
	"$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install --quiet --upgrade pip

# torch first, on its own, from the chosen source: installing the project afterwards finds the pin
# satisfied and never pulls a (CUDA) build from PyPI.
wanted="${pin#torch==}"
have="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
if [[ "${have%%+*}" == "$wanted" ]]; then
	echo "install.sh: torch $have already installed"
elif [[ -n "$torch_index_url" ]]; then
	echo "install.sh: installing $pin from $torch_index_url"
	"${pip[@]}" install --quiet --index-url "$torch_index_url" "$pin"
else
	echo "install.sh: installing $pin"
	"${pip[@]}" install --quiet "$pin"
fi
[[ "$torch_only" == 1 ]] && exit 0

target="$root"
[[ -n "$extras" ]] && target="$root[$extras]"
if [[ "$editable" == 1 ]]; then
	"${pip[@]}" install --quiet -e "$target"
else
	"${pip[@]}" install --quiet "$target"
fi
echo "install.sh: lookbook installed in $venv${extras:+ with [$extras]}"
