#!/usr/bin/env bash
# Prepare an emulated Raspberry Pi (aarch64, Raspberry Pi OS bookworm's Python 3.11) on an x86 host,
# used by tests/test_deploy_pi.py to run deployment bundles where they will run.
#
#   sudo .ci/setup_pi_emulation.sh                    # caches under <repo>/.pi-emu
#   RNNEDGE_PI_ROOT=/cache/pi .ci/setup_pi_emulation.sh
#
# What it does (see /work/shared/PI_EMULATION.md), each step skipped when already done:
#   1. apt-get install qemu-user-static (user-mode QEMU; no binfmt, no chroot)
#   2. downloads Debian bookworm arm64 packages of python3.11 and its libraries and unpacks
#      them into $RNNEDGE_PI_ROOT/root (the -L prefix for qemu), without adding arm64 to the host
#   3. writes an ARM /proc/cpuinfo (Cortex-A72, Pi 4) under that root: qemu 7.2 otherwise shows
#      the host's x86 one and onnxruntime/LiteRT crash
#   4. downloads the aarch64 wheels of two runtime sets and unpacks them:
#        site/legacy : numpy==1.26.4 tflite-runtime==2.14.0     (Pi OS bookworm as shipped)
#        site/current: numpy ai-edge-litert onnxruntime (+deps)  (today's wheels)
#   5. writes bin/pi-python: `pi-python legacy|current script.py args...`
#      and smoke-tests both sets.
# Needs root for apt-get (step 1 only, skipped when qemu-aarch64-static is already on PATH).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PI="${RNNEDGE_PI_ROOT:-$REPO/.pi-emu}"
PY="${PYTHON:-python3}"
CPU="${RNNEDGE_PI_CPU:-cortex-a72}"
LEGACY_PKGS="${RNNEDGE_PI_LEGACY:-numpy==1.26.4 tflite-runtime==2.14.0}"
CURRENT_PKGS="${RNNEDGE_PI_CURRENT:-numpy ai-edge-litert onnxruntime}"
mkdir -p "$PI"
PI="$(cd "$PI" && pwd)"
log() { echo "[setup_pi_emulation] $*"; }

# ---- 1. qemu-user-static ---------------------------------------------------------------------
if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: qemu-aarch64-static is missing and installing it needs root (apt-get install qemu-user-static)" >&2
    exit 1
  fi
  log "installing qemu-user-static"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
fi
QEMU="$(command -v qemu-aarch64-static)"
log "qemu: $("$QEMU" --version | head -1)"

# ---- 2. arm64 userland ------------------------------------------------------------------------
ROOT="$PI/root"
DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3.11 libc6 libgcc-s1
      libstdc++6 libexpat1 zlib1g libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 libncursesw6
      libtinfo6 libreadline8 libuuid1 libdb5.3 libgdbm6 libnsl2 libtirpc3 libgssapi-krb5-2
      libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libcrypt1 libzstd1
      libselinux1 libpcre2-8-0 libmd0)
if [ ! -f "$PI/.root-done" ]; then
  log "downloading ${#DEBS[@]} arm64 packages (Debian bookworm)"
  mkdir -p "$PI/apt/lists/partial" "$PI/apt/cache/archives/partial" "$PI/debs"
  APT_OPTS=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
            -o Dir::State::Lists="$PI/apt/lists" -o Dir::Cache="$PI/apt/cache"
            -o Dir::State::status=/dev/null -o Debug::NoLocking=1)
  apt-get "${APT_OPTS[@]}" update -qq
  (cd "$PI/debs" && apt-get "${APT_OPTS[@]}" download "${DEBS[@]/%/:arm64}" >/dev/null)
  rm -rf "$ROOT"; mkdir -p "$ROOT"
  for d in "$PI"/debs/*.deb; do dpkg -x "$d" "$ROOT"; done
  touch "$PI/.root-done"
fi
test -x "$ROOT/usr/bin/python3.11"

# ---- 3. ARM /proc/cpuinfo under the -L root -----------------------------------------------------
mkdir -p "$ROOT/proc"
: > "$ROOT/proc/cpuinfo"
for i in 0 1 2 3; do
  cat >> "$ROOT/proc/cpuinfo" <<EOF
processor	: $i
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

EOF
done
cat >> "$ROOT/proc/cpuinfo" <<EOF
Hardware	: BCM2835
Revision	: c03111
Model		: Raspberry Pi 4 Model B Rev 1.1
EOF

# ---- 4. aarch64 wheels ----------------------------------------------------------------------------
# pip takes --platform tags literally: list every manylinux tag a bookworm Pi (glibc 2.36) accepts.
PLAT=(--only-binary=:all: --python-version 3.11 --implementation cp --platform manylinux2014_aarch64)
for v in $(seq 17 36); do PLAT+=(--platform "manylinux_2_${v}_aarch64"); done
fetch_set() {  # name, extra pip args..., packages
  local name="$1"; shift
  if [ -f "$PI/.site-$name-done" ]; then return; fi
  log "downloading aarch64 wheels for '$name': $*"
  rm -rf "$PI/wheels/$name" "$PI/site/$name"
  mkdir -p "$PI/wheels/$name" "$PI/site/$name"
  "$PY" -m pip download -q --disable-pip-version-check "${PLAT[@]}" \
      -d "$PI/wheels/$name" "$@"
  "$PY" - "$PI/wheels/$name" "$PI/site/$name" <<'PYEOF'
import pathlib, sys, zipfile
src, dst = map(pathlib.Path, sys.argv[1:])
for w in sorted(src.glob("*.whl")):
    with zipfile.ZipFile(w) as z:
        z.extractall(dst)
    print("  ", w.name)
PYEOF
  touch "$PI/.site-$name-done"
}
# shellcheck disable=SC2086
fetch_set legacy --no-deps $LEGACY_PKGS
# shellcheck disable=SC2086
fetch_set current $CURRENT_PKGS

# ---- 5. wrapper + smoke test ----------------------------------------------------------------------
mkdir -p "$PI/bin"
cat > "$PI/bin/pi-python" <<EOF
#!/usr/bin/env bash
# Usage: pi-python legacy|current script.py [args...]  (aarch64 Python 3.11 under qemu, $CPU)
set -e
SET="\$1"; shift
PI="\${RNNEDGE_PI_ROOT:-$PI}"
export PYTHONPATH="\$PI/site/\$SET" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1
exec "$QEMU" -cpu "\${RNNEDGE_PI_CPU:-$CPU}" -L "\$PI/root" "\$PI/root/usr/bin/python3.11" "\$@"
EOF
chmod +x "$PI/bin/pi-python"

"$PI/bin/pi-python" legacy -c 'import platform, numpy, tflite_runtime
from tflite_runtime.interpreter import Interpreter
print("legacy :", platform.machine(), platform.python_version(), "numpy", numpy.__version__, "tflite-runtime", tflite_runtime.__version__)'
"$PI/bin/pi-python" current -c 'import platform, numpy, onnxruntime
from importlib.metadata import version
from ai_edge_litert.interpreter import Interpreter
print("current:", platform.machine(), platform.python_version(), "numpy", numpy.__version__, "ai-edge-litert", version("ai-edge-litert"), "onnxruntime", onnxruntime.__version__)'
touch "$PI/READY"
log "ready: $PI (run: $PI/bin/pi-python legacy|current script.py)"
