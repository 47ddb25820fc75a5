#!/usr/bin/env bash
# Download, on a machine with internet, the wheels that bench/gpu_check.sh --wheels DIR installs
# on a GPU machine without it (docs/gpu.md says which build fits which machine, and their sizes).
#
#   bench/gpu_wheels.sh                       # mxnet-cu117 1.9.1 + the pins, Python 3.11
#   bench/gpu_wheels.sh --cuda cu112 --cuda-libs --onnxruntime-gpu --dest /data/wheels
#
# Always: mxnet-<cuda>==1.9.1 and its dependencies (requests, graphviz) and the project's pins
# of numpy, opencv-python-headless, Cython, easydict, scipy and tqdm (read from
# requirements.txt), binary wheels for CPython --python-version on manylinux x86-64.
# --cuda-libs adds the CUDA 11 runtime libraries libmxnet.so links against (libcudart.so.11.0,
# libcublas.so.11, libcufft.so.10, libcurand.so.10, libcusolver.so.11, libcusparse.so.11,
# libnvrtc.so.11.2, libnvToolsExt.so.1, libcudnn.so.8, libnccl.so.2) as NVIDIA's pip packages,
# for a machine without a CUDA 11 toolkit and cuDNN 8; gpu_check.sh puts their lib folders on
# LD_LIBRARY_PATH. --onnxruntime-gpu adds onnxruntime-gpu, onnx and protobuf (pins of
# requirements-deploy.txt) for the check's onnxruntime stage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/gpu_wheels"
CUDA=cu117
PYTHON_VERSION=3.11
CUDA_LIBS=0
ONNX_GPU=0
DRY_RUN=0
PIP="${PIP:-python3 -m pip}"

# NVIDIA's CUDA 11 packages providing the libraries above (the CUDA 11.7 releases, cuDNN 8.9,
# NCCL 2.14); any CUDA 11.x build of MXNet 1.9.1 loads them (same library versions)
CUDA11_LIBS=(nvidia-cuda-runtime-cu11==11.7.99 nvidia-cuda-nvrtc-cu11==11.7.99
             nvidia-cublas-cu11==11.10.3.66 nvidia-cufft-cu11==10.7.2.91
             nvidia-curand-cu11==10.2.10.91 nvidia-cusolver-cu11==11.4.0.1
             nvidia-cusparse-cu11==11.7.4.91 nvidia-nvtx-cu11==11.7.91
             nvidia-cudnn-cu11==8.9.6.50 nvidia-nccl-cu11==2.14.3)
# manylinux tags pip must be told when it downloads for another interpreter
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64)

usage() {
    cat <<'EOF'
usage: bench/gpu_wheels.sh [--dest DIR] [--cuda cuXYZ] [--python-version X.Y] [--cuda-libs]
                           [--onnxruntime-gpu] [--dry-run]

  --dest DIR            folder for the wheels (default gpu_wheels/ in the repository, git-ignored)
  --cuda cuXYZ          the MXNet build: cu101 cu102 cu110 cu112 cu113 cu116 cu117 (default cu117;
                        take the newest whose CUDA version is not above the driver's), or cpu
                        (the CPU build, for gpu_check.sh --cpu --wheels DIR)
  --python-version X.Y  the GPU machine's Python (default 3.11; numpy 1.23.5, which MXNet 1.9.1
                        needs, has no wheels for 3.12 or later)
  --cuda-libs           also the CUDA 11 runtime, cuDNN 8 and NCCL wheels (CUDA 11 builds only)
  --onnxruntime-gpu     also onnxruntime-gpu, onnx and protobuf
  --dry-run             print the pip commands instead of running them
EOF
}

fail() {
    echo "gpu_wheels.sh: $*" >&2
    exit 2
}

value() {
    [ $# -ge 2 ] && [ -n "$2" ] && [[ "$2" != --* ]] || fail "$1 needs a value (see --help)"
    printf '%s' "$2"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dest) DEST="$(value "$@")"; shift ;;
        --cuda) CUDA="$(value "$@")"; shift ;;
        --python-version) PYTHON_VERSION="$(value "$@")"; shift ;;
        --cuda-libs) CUDA_LIBS=1 ;;
        --onnxruntime-gpu) ONNX_GPU=1 ;;
        --dry-run) DRY_RUN=1 ;;
        -h|--help) usage; exit 0 ;;
        *) fail "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
case "$CUDA" in
    cu101|cu102|cu110|cu112|cu113|cu116|cu117) MXNET="mxnet-$CUDA==1.9.1" ;;
    cpu) MXNET="mxnet==1.9.1" ;;
    *) fail "--cuda $CUDA: MXNet 1.9.1 is published for cu101 cu102 cu110 cu112 cu113 cu116 cu117 (and cpu)" ;;
esac
[[ "$PYTHON_VERSION" =~ ^3\.[0-9]+$ ]] || fail "--python-version takes X.Y, got '$PYTHON_VERSION'"
if [ "$CUDA_LIBS" = 1 ] && [[ "$CUDA" != cu11* ]]; then
    fail "--cuda-libs holds CUDA 11 libraries; --cuda $CUDA needs CUDA 10 ones"
fi

pin() {  # the "name==version" line of requirements*.txt for package $1
    local line
    line="$(grep -hi "^$1==" "$ROOT"/requirements*.txt | head -n 1 || true)"
    [ -n "$line" ] || fail "no pin for $1 in requirements*.txt"
    printf '%s' "$line"
}

platform_flags=()
for tag in "${PLATFORMS[@]}"; do platform_flags+=(--platform "$tag"); done
common=(download --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp
        "${platform_flags[@]}" --disable-pip-version-check -d "$DEST")

packages=("$MXNET")
for name in numpy opencv-python-headless Cython easydict scipy tqdm; do packages+=("$(pin "$name")"); done
if [ "$ONNX_GPU" = 1 ]; then
    version="$(pin onnxruntime)"
    packages+=("onnxruntime-gpu==${version#*==}" "$(pin onnx)" "$(pin protobuf)")
fi

run() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "$PIP $*"
    else
        $PIP "$@"
    fi
}

[ "$DRY_RUN" = 1 ] || mkdir -p "$DEST"
run "${common[@]}" "${packages[@]}" || fail "pip could not download ${packages[*]} for Python" \
    "$PYTHON_VERSION (numpy 1.23.5 exists for Python 3.8 to 3.11 only)"
if [ "$CUDA_LIBS" = 1 ]; then
    # --no-deps: these packages name each other; the list above is complete for libmxnet.so
    run "${common[@]}" --no-deps "${CUDA11_LIBS[@]}" || fail "pip could not download the CUDA 11 libraries"
fi
if [ "$DRY_RUN" = 0 ]; then
    echo "wheels in $DEST: $(du -sh "$DEST" | cut -f1) in $(ls "$DEST"/*.whl | wc -l) files"
    ls -l "$DEST"/mxnet*-1.9.1-*.whl
fi
