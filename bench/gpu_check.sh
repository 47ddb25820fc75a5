#!/usr/bin/env bash
# The GPU check (docs/gpu.md): training and detection speed on an NVIDIA GPU and the
# detections' agreement with the CPU, written to <out>/gpu_check.json and <out>/gpu_check.log.
#
#   bench/gpu_check.sh --wheels gpu_wheels --shared DIR [--out DIR]   # fresh virtualenv
#   bench/gpu_check.sh --python /path/to/python --shared DIR          # MXNet CUDA installed
#   bench/gpu_check.sh --cpu                                          # the plumbing, on the CPU
#
# Steps: (1) the driver (nvidia-smi, its CUDA version); (2) the interpreter: with --wheels a
# fresh virtualenv holding the mxnet-cuXYZ 1.9.1 wheel that matches the driver (the newest
# CUDA not above the driver's) and the project's pins, installed from that folder alone
# (bench/gpu_wheels.sh prepares it); otherwise --python, or the first of .venv/bin/python,
# python3.11, python3 whose MXNet is a CUDA build (--cpu: .venv/bin/python); (3) the Cython
# kernels (setup.py build_ext --inplace); (4) python -m bench.gpu_check, within the time limit.
# Exit status: 0 all stages passed, 1 a stage failed (named in the JSON's "errors"), 2 the
# machine or the flags do not allow the check (one line saying what is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=gpu
SHARED="$ROOT/../shared"
SHARED_GIVEN=0
WHEELS=""
PYTHON=""
OUT=/tmp/retinaface-gpu-check
VENV=""
LIMIT=480

usage() {
    cat <<'EOF'
usage: bench/gpu_check.sh [--cpu] [--shared DIR] [--wheels DIR] [--python PY] [--out DIR]
                          [--venv DIR] [--time-limit SECONDS]

  --cpu            the same stages on the CPU with small sizes (no GPU needed)
  --shared DIR     folder holding models/mnet.25/mnet.25-{symbol.json,0000.params} and
                   images/bald_guys.jpg (default ../shared beside the repository)
  --wheels DIR     create a fresh virtualenv and install from the wheels in DIR only
                   (bench/gpu_wheels.sh downloads them); the MXNet wheel is the
                   mxnet_cuXYZ-1.9.1 one matching the driver
  --python PY      the interpreter to use (with --wheels: the one the virtualenv is made from;
                   default python3.11, else python3)
  --out DIR        folder for gpu_check.json and gpu_check.log (default /tmp/retinaface-gpu-check;
                   scratch files go to DIR-work)
  --venv DIR       where --wheels creates the virtualenv (default <out>-venv)
  --time-limit S   seconds for the whole check (default 480)
EOF
}

fail() {   # one line saying what is missing, exit status 2
    echo "gpu_check.sh: $*" >&2
    exit 2
}

value() {  # the value of flag $1, or an error naming the flag
    [ $# -ge 2 ] && [ -n "$2" ] && [[ "$2" != --* ]] || fail "$1 needs a value (see --help)"
    printf '%s' "$2"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) MODE=cpu ;;
        --shared) SHARED="$(value "$@")"; SHARED_GIVEN=1; shift ;;
        --wheels) WHEELS="$(value "$@")"; shift ;;
        --python) PYTHON="$(value "$@")"; shift ;;
        --out) OUT="$(value "$@")"; shift ;;
        --venv) VENV="$(value "$@")"; shift ;;
        --time-limit) LIMIT="$(value "$@")"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) fail "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ "$LIMIT" =~ ^[0-9]+$ ]] || fail "--time-limit takes whole seconds, got '$LIMIT'"
if [ "$SHARED_GIVEN" = 1 ] && [ ! -f "$SHARED/models/mnet.25/mnet.25-symbol.json" ]; then
    fail "--shared $SHARED: no models/mnet.25/mnet.25-symbol.json there (copy the released" \
         "mnet.25 and images/bald_guys.jpg into it)"
fi

mkdir -p "$OUT" || fail "--out $OUT: cannot create the folder"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu_check.log"
: > "$LOG" || fail "--out $OUT: cannot write $LOG"
# everything to the terminal and the log; errors stay on stderr
exec > >(tee -a "$LOG") 2> >(tee -a "$LOG" >&2)
say() { echo "$(date -u '+%Y-%m-%d %H:%M:%S') gpu_check.sh: $*"; }
say "mode $MODE, repository $ROOT, output $OUT"

# ---- (1) the driver
DRIVER_CUDA=""
if [ "$MODE" = gpu ]; then
    command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: no NVIDIA driver on this" \
        "machine (bench/gpu_check.sh --cpu runs the check's plumbing on the CPU)"
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || true
    DRIVER_CUDA="$(nvidia-smi | grep -o 'CUDA Version: *[0-9.]*' | grep -o '[0-9.]*$' || true)"
    say "driver supports CUDA ${DRIVER_CUDA:-(unknown)}"
fi

cuda_number() {  # "11.7" -> 117, "13.0" -> 130
    local major="${1%%.*}" minor="${1#*.}"
    echo $(( major * 10 + ${minor%%.*} ))
}

pin() {  # the "name==version" line of requirements*.txt for package $1
    grep -hi "^$1==" "$ROOT"/requirements*.txt | head -n 1
}

pip_cuda_libs() {  # the lib folders of NVIDIA's pip packages (nvidia/*/lib) of interpreter $1
    "$1" -c "import glob, site; print(':'.join(d for p in site.getsitepackages() for d in glob.glob(p + '/nvidia/*/lib')))" \
        2>/dev/null || true
}

with_cuda_libs() {  # run interpreter $1 (args after it) with its pip CUDA libraries found
    local libs
    libs="$(pip_cuda_libs "$1")"
    LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
}

has_cuda_mxnet() {  # interpreter $1 imports an MXNet built with CUDA
    with_cuda_libs "$1" -c "import mxnet; import sys; sys.exit(0 if mxnet.runtime.Features().is_enabled('CUDA') else 1)" \
        >/dev/null 2>&1
}

# ---- (2) the interpreter
if [ -n "$WHEELS" ]; then
    [ -d "$WHEELS" ] || fail "--wheels $WHEELS is not a folder (bench/gpu_wheels.sh fills one)"
    WHEELS="$(cd "$WHEELS" && pwd)"
    if [ "$MODE" = gpu ]; then
        [ -n "$DRIVER_CUDA" ] || fail "nvidia-smi does not say which CUDA version the driver" \
            "supports; cannot choose an mxnet-cuXYZ wheel"
        best="" best_cuda=0
        for wheel in "$WHEELS"/mxnet_cu*-1.9.1-*.whl; do
            [ -e "$wheel" ] || continue
            tag="$(basename "$wheel" | sed -E 's/^mxnet_cu([0-9]+)-.*/\1/')"
            cuda=$(( ${tag:0:${#tag}-1} * 10 + ${tag: -1} ))
            if [ "$cuda" -le "$(cuda_number "$DRIVER_CUDA")" ] && [ "$cuda" -gt "$best_cuda" ]; then
                best="$wheel" best_cuda="$cuda"
            fi
        done
        found="$(cd "$WHEELS" && ls mxnet*-1.9.1-*.whl 2>/dev/null | tr '\n' ' ')"
        [ -n "$best" ] || fail "--wheels $WHEELS: no mxnet_cuXYZ-1.9.1 wheel for CUDA <=" \
            "$DRIVER_CUDA (found: ${found:-none}); run bench/gpu_wheels.sh --cuda cuXYZ"
        MXNET_WHEEL="$best"
    else
        MXNET_WHEEL="$(ls "$WHEELS"/mxnet-1.9.1-*.whl 2>/dev/null | head -n 1 || true)"
        [ -n "$MXNET_WHEEL" ] || fail "--wheels $WHEELS: no mxnet-1.9.1 (CPU) wheel for --cpu"
    fi
    BASE_PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
    [ -n "$BASE_PYTHON" ] || fail "no python3.11 or python3 to create the virtualenv (--python PY)"
    VENV="${VENV:-$OUT-venv}"
    say "virtualenv $VENV from $BASE_PYTHON ($("$BASE_PYTHON" --version 2>&1)), MXNet $(basename "$MXNET_WHEEL")"
    "$BASE_PYTHON" -m venv --clear "$VENV" || fail "cannot create a virtualenv with $BASE_PYTHON"
    PY="$VENV/bin/python"
    packages=("$MXNET_WHEEL")
    for name in numpy opencv-python-headless Cython easydict scipy tqdm; do
        packages+=("$(pin "$name")")
    done
    # optional: the ONNX stage runs when these were prepared
    if ls "$WHEELS"/onnxruntime_gpu-*.whl >/dev/null 2>&1; then
        packages+=("$(pin onnx)" "$(pin protobuf)" onnxruntime-gpu)
    fi
    # nvidia-*-cu11 wheels (bench/gpu_wheels.sh --cuda-libs): CUDA 11 runtime, cuDNN 8, NCCL
    for wheel in "$WHEELS"/nvidia_*_cu11-*.whl; do
        [ -e "$wheel" ] && packages+=("$wheel")
    done
    if ! "$PY" -m pip install --no-index --find-links "$WHEELS" --disable-pip-version-check -q \
            "${packages[@]}"; then
        fail "pip could not install ${packages[*]##*/} from --wheels $WHEELS for" \
             "$("$PY" --version 2>&1) (see the lines above for the missing one; the wheels" \
             "must match this Python, bench/gpu_wheels.sh --python-version)"
    fi
elif [ -n "$PYTHON" ]; then
    PY="$PYTHON"
elif [ "$MODE" = cpu ]; then
    PY="$ROOT/.venv/bin/python"
    [ -x "$PY" ] || PY="$(command -v python3)"
else
    PY=""
    tried=()
    for candidate in "$ROOT/.venv/bin/python" python3.11 python3; do
        path="$(command -v "$candidate" || true)"
        [ -n "$path" ] || continue
        tried+=("$path")
        if has_cuda_mxnet "$path"; then PY="$path"; break; fi
    done
    [ -n "$PY" ] || fail "no MXNet CUDA build found (tried: ${tried[*]:-no interpreter}); pass" \
        "--wheels DIR (bench/gpu_wheels.sh prepares it) or --python PY"
fi
command -v "$PY" >/dev/null || fail "--python $PY: no such interpreter"
missing="$("$PY" - <<'EOF'
import importlib.util
names = ['mxnet', 'numpy', 'cv2', 'Cython', 'easydict', 'scipy', 'tqdm']
print(' '.join(n for n in names if importlib.util.find_spec(n) is None))
EOF
)"
[ -z "$missing" ] || fail "$PY lacks the module(s) $missing (pip install -r requirements.txt," \
    "or --wheels DIR)"
if [ "$MODE" = gpu ]; then
    # pip's CUDA libraries (nvidia/*/lib of the interpreter's site-packages) where present
    libs="$(pip_cuda_libs "$PY")"
    if [ -n "$libs" ]; then
        export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    has_cuda_mxnet "$PY" || fail "$PY: its MXNet is not a CUDA build, or libmxnet.so misses" \
        "CUDA libraries ($("$PY" -c 'import mxnet' 2>&1 | tail -n 1))"
fi
say "interpreter $PY: $("$PY" -c 'import sys, numpy, mxnet; print("Python %s, numpy %s, mxnet %s" % (sys.version.split()[0], numpy.__version__, mxnet.__version__))' 2>&1 | tail -n 1)"

# ---- (3) the Cython kernels
say "building the Cython kernels"
(cd "$ROOT" && "$PY" setup.py -q build_ext --inplace >/dev/null) || \
    fail "the Cython kernels did not build with $PY (a C compiler and Cython are needed)"

# ---- (4) the check
left=$(( LIMIT - SECONDS ))
[ "$left" -gt 30 ] || fail "--time-limit $LIMIT: only ${left}s left after the set-up"
say "running bench.gpu_check ($left s left)"
status=0
(cd "$ROOT" && timeout --kill-after=10 "$left" "$PY" -m bench.gpu_check --device "$MODE" \
    --shared "$SHARED" --out "$OUT") || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    say "the check ran past the time limit ($LIMIT s); $OUT/gpu_check.json holds the stages done"
    status=1
fi
say "done in ${SECONDS}s, exit status $status: $OUT/gpu_check.json"
exit "$status"
