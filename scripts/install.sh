#!/usr/bin/env bash
# Install recsys-recipes (editable) into the current Python environment.
#   bash scripts/install.sh          # runtime
#   bash scripts/install.sh --test   # runtime + test tools (pytest, scikit-learn, ruff)
# torch: an importable torch is kept as it is (NGC containers ship their own build). Otherwise a machine
# with an NVIDIA GPU gets the default (CUDA) wheel, and a machine without one the CPU-only wheel, so a
# laptop or CI runner never downloads gigabytes of CUDA libraries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-$(command -v python || command -v python3)}
extras=""
case "${1:-}" in
  --test) extras="[test]" ;;
  "") ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
if version=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
  echo "install.sh: keeping the installed torch $version"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "install.sh: NVIDIA GPU found, installing the CUDA build of torch"
  "$PYTHON" -m pip install "torch>=2.4"
else
  echo "install.sh: no GPU found, installing the CPU-only build of torch"
  "$PYTHON" -m pip install "torch==${TORCH_CPU_VERSION:-2.13.0}" --extra-index-url https://download.pytorch.org/whl/cpu
fi
# Pin whatever torch is now installed, so resolving our dependencies can never replace it.
"$PYTHON" -c 'import torch; print(f"torch=={torch.__version__}")' >"$constraints"
"$PYTHON" -m pip install -c "$constraints" -e ".$extras"
echo "install.sh: recsys-recipes installed ($("$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))"
