#!/usr/bin/env bash
# Times the GEMM kernels' packed and unpacked paths alone (scripts/gemm-paths.c), compiled from
# src/RecurrentGemma.Model/Native with the flags scripts/native-kernels.sh uses. A developer
# step (needs gcc and a CPU with AVX-512 and AVX512-BF16); the figures go to docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
native=src/RecurrentGemma.Model/Native
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
flags=(-O2 -fno-jump-tables -fno-asynchronous-unwind-tables -fno-stack-protector -fcf-protection=none -fno-pic)
gcc "${flags[@]}" -mavx512f -mavx512bw -mavx512vl -mavx512bf16 -c "$native/gemm_bf16.c" -o "$tmp/bf16.o"
gcc "${flags[@]}" -mavx512f -mfma -c "$native/gemm_f32.c" -o "$tmp/f32.o"
gcc -O2 -no-pie scripts/gemm-paths.c "$tmp/bf16.o" "$tmp/f32.o" -o "$tmp/gemm-paths"
"$tmp/gemm-paths"
