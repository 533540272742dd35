#!/usr/bin/env bash
# Create (or bring up to date) a Python venv that can run a ComfyUI checkout,
# for the integration tests and bench/dit_vs_comfy.py. Idempotent: run it again
# and it only installs what is missing and re-applies the torchvision patch.
#
#   COMFYUI_ROOT=/path/to/ComfyUI [COMFYUI_VENV=/path/to/venv] [PYTHON=python3.11] \
#   [TORCH_VERSION=2.13.0] [TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu] \
#       tests/integration/setup_host_venv.sh
#
# COMFYUI_VENV defaults to $COMFYUI_ROOT/../comfy-venv, which is where
# tests/integration/conftest.py looks for the host's python.
#
# Why the patches: pip can pick a torchvision wheel whose compiled ops do not
# load with a CPU torch. torchvision/_meta_registrations.py then dies at import
# registering fake kernels for `torchvision::nms` / `torchvision::qnms`, ops that
# do not exist. The patch makes those two registrations conditional on
# torchvision.extension._has_ops(), as the file already does for every other op.
# Newer hosts (0.33.0) import torchaudio at start-up; when no torchaudio build
# matches the CPU torch, its native library fails to load and the server never
# starts. The second patch makes that load optional (torchaudio then imports
# without its compiled ops, which the pack's tests never use), as torchaudio
# already does when the library file is absent.
set -euo pipefail

: "${COMFYUI_ROOT:?set COMFYUI_ROOT to a ComfyUI checkout}"
COMFYUI_ROOT="$(cd "$COMFYUI_ROOT" && pwd)"
COMFYUI_VENV="${COMFYUI_VENV:-$(dirname "$COMFYUI_ROOT")/comfy-venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

[ -f "$COMFYUI_ROOT/main.py" ] && [ -f "$COMFYUI_ROOT/requirements.txt" ] \
    || { echo "not a ComfyUI checkout: $COMFYUI_ROOT" >&2; exit 2; }

if [ ! -x "$COMFYUI_VENV/bin/python" ]; then
    echo "creating venv $COMFYUI_VENV"
    "$PYTHON" -m venv "$COMFYUI_VENV"
fi
VPY="$COMFYUI_VENV/bin/python"

have_torch="$("$VPY" -c 'import torch, sys; sys.stdout.write(torch.__version__.split("+")[0])' 2>/dev/null || true)"
if [ "$have_torch" != "$TORCH_VERSION" ]; then
    echo "installing torch==$TORCH_VERSION"
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        "$VPY" -m pip install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
    else
        "$VPY" -m pip install "torch==$TORCH_VERSION"
    fi
fi

# The host's requirements, with torch held at the version installed above.
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==$TORCH_VERSION" > "$constraints"
"$VPY" -m pip install -r "$COMFYUI_ROOT/requirements.txt" -c "$constraints"
"$VPY" -m pip install -c "$constraints" requests safetensors einops pytest
# OpenCV and onnxruntime as a user gets them: the pack's install.py (one of each; none added where one is present)
"$VPY" "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/install.py"

# The torchvision patch (see the header). Matches only the unpatched lines.
meta="$("$VPY" - <<'EOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchvision")
if spec is not None and spec.origin:
    p = pathlib.Path(spec.origin).parent / "_meta_registrations.py"
    if p.exists():
        print(p)
EOF
)"
if [ -n "$meta" ]; then
    sed -i -E \
        's/^@torch\.library\.register_fake\("torchvision::(nms|qnms)"\)$/@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() else (lambda fn: fn))/' \
        "$meta"
    echo "torchvision meta registrations: $(grep -c '_has_ops() else (lambda fn: fn)' "$meta") conditional (patched) in $meta"
fi

# The torchaudio patch (see the header), only where its native library does not load.
if ! "$VPY" -c 'import torchaudio' >/dev/null 2>&1; then
    ext="$("$VPY" - <<'EOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
if spec is not None and spec.origin:
    p = pathlib.Path(spec.origin).parent / "_extension" / "__init__.py"
    if p.exists():
        print(p)
EOF
)"
    if [ -n "$ext" ]; then
        sed -i -E 's/^_IS_TORCHAUDIO_EXT_AVAILABLE = _load_lib\("_torchaudio"\)$/try:\n    _IS_TORCHAUDIO_EXT_AVAILABLE = _load_lib("_torchaudio")\nexcept OSError:  # patched: no torchaudio build matches this torch\n    _IS_TORCHAUDIO_EXT_AVAILABLE = False/' "$ext"
        echo "torchaudio native library made optional in $ext"
    fi
fi

"$VPY" -c 'import torch, torchvision, torchaudio; print("host venv ok: torch", torch.__version__, "torchvision", torchvision.__version__, "torchaudio", torchaudio.__version__)'
