#!/usr/bin/env bash
# Download, on a machine with network access, the wheels that benchmarks/gpu_check.sh installs on
# the lent H200 (Python 3.12, no network there; CuPy 14 for CUDA 13, numba-cuda, PyTorch, pyarrow,
# scikit-learn are already on it). They land in .whl/ (git-ignored; about 26 MB, inside the
# device tool's 64 MiB carry limit). faiss-gpu (135 MB + CUDA 12 libraries) cannot be carried, so
# the kNN comparison there is against faiss-cpu and PyTorch on the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_34_x86_64)
for pkg in faiss-cpu==1.15.1 grpcio==1.85.3 protobuf==7.36.2 grpcio-health-checking==1.85.1 \
           grpcio-reflection==1.85.1 datasketch==2.0.0 rensa==0.5.0; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${plat[@]}" -d .whl "$pkg"
done
du -sh .whl
