#!/usr/bin/env bash
# Create .venv and install qmoe-qiskit with a CPU build of PyTorch.
#   bash scripts/setup.sh          the toolkit
#   bash scripts/setup.sh --test   the toolkit, readout mitigation (mthree), Ray and the test tools
#   bash scripts/setup.sh --bench  the toolkit and the benchmark extras (PennyLane, qulacs)
# PyTorch is installed first, pinned, so that resolving the other packages never pulls CUDA
# wheels. Set TORCH_INDEX_URL to a CPU wheel index on machines whose default index serves CUDA
# builds for this version.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
case "${1:-}" in
  "") ;;
  --test) extras="[test,mitigation,ray]" ;;
  --bench) extras="[test,mitigation,ray,bench]" ;;
  *) echo "setup.sh: unknown option '$1' (valid: --test, --bench)" >&2; exit 2 ;;
esac

python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${pip[@]}" "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
  else
    "${pip[@]}" "torch==2.13.0"
  fi
fi
"${pip[@]}" -e ".${extras}"
.venv/bin/python -c "import torch, qmoe_qiskit; print(f'qmoe-qiskit ready: torch {torch.__version__}, cuda={torch.version.cuda}')"
