#!/usr/bin/env bash
# The host matrix: the integration suite inside every ComfyUI whose sources are vendored beside this clone
# (../shared/vendor/*.tar.gz, or $POSEANIMATE_VENDOR), then the browser suite in the newest of them.
#
#   bash tests/run_host_matrix.sh
#
# Each tarball is unpacked once, outside the clone, into $POSEANIMATE_HOSTS_DIR (default
# ~/.cache/poseanimate-hosts/<tarball name>/ComfyUI) with its own venv beside it
# (tests/integration/setup_host_venv.sh, idempotent: a second run only checks it). A newer host dropped into
# the vendor folder joins the matrix by itself; the newest is the one with the highest comfyui_version.
# Without tarballs both suites still run and every test says why it skipped. Exits non-zero when any suite
# fails, after running all of them; prints the time each host took.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
VENDOR="${POSEANIMATE_VENDOR:-$REPO/../shared/vendor}"
HOSTS_DIR="${POSEANIMATE_HOSTS_DIR:-$HOME/.cache/poseanimate-hosts}"
PYTEST=(python3 -m pytest -q -rs -p no:cacheprovider)

shopt -s nullglob
tarballs=("$VENDOR"/*.tar.gz)
if [ ${#tarballs[@]} -eq 0 ]; then
    echo "host matrix: no ComfyUI sources in $VENDOR; the integration and browser suites skip with their reason"
    "${PYTEST[@]}" tests/integration tests/browser
    status=$?
    [ $status -eq 5 ] && status=0  # every test skipped is not a failure here
    exit $status
fi

failed=()
roots=()
versions=()
for tarball in "${tarballs[@]}"; do
    name="$(basename "$tarball" .tar.gz)"
    root="$HOSTS_DIR/$name/ComfyUI"
    if [ ! -f "$root/main.py" ]; then
        rm -rf "$root" && mkdir -p "$root" && tar -xzf "$tarball" -C "$root" || { failed+=("$name: unpack"); continue; }
    fi
    if ! COMFYUI_ROOT="$root" bash tests/integration/setup_host_venv.sh > "$HOSTS_DIR/$name/setup.log" 2>&1; then
        tail -40 "$HOSTS_DIR/$name/setup.log"
        failed+=("$name: venv")
        continue
    fi
    version="$("$HOSTS_DIR/$name/comfy-venv/bin/python" -c "import sys; sys.path.insert(0, '$root'); import comfyui_version; print(comfyui_version.__version__)" 2>/dev/null || echo 0)"
    roots+=("$root")
    versions+=("$version")
    echo "=== integration suite in ComfyUI $version ($name)"
    start=$(date +%s)
    COMFYUI_ROOT="$root" "${PYTEST[@]}" tests/integration || failed+=("ComfyUI $version: integration")
    echo "=== ComfyUI $version: integration suite took $(( $(date +%s) - start )) s"
done

if [ ${#roots[@]} -gt 0 ]; then
    newest="$(for i in "${!versions[@]}"; do echo "${versions[$i]} $i"; done | sort -V | tail -1 | cut -d' ' -f2)"
    echo "=== browser suite in the newest host, ComfyUI ${versions[$newest]}"
    start=$(date +%s)
    COMFYUI_ROOT="${roots[$newest]}" "${PYTEST[@]}" tests/browser || failed+=("ComfyUI ${versions[$newest]}: browser")
    echo "=== ComfyUI ${versions[$newest]}: browser suite took $(( $(date +%s) - start )) s"
fi

if [ ${#failed[@]} -gt 0 ]; then
    printf 'host matrix FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "host matrix passed in ${#roots[@]} host(s): ${versions[*]}"
