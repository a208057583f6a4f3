#!/usr/bin/env bash
# Compiles the C kernels in src/RecurrentGemma.Model/Native/ and writes their machine code, as
# base64, into C# classes beside the ones that map them (a developer step, needs gcc and binutils; the
# build and the tests only use the committed bytes):
#   gemv_bf16_dot.c -> Modules/Bf16DotCode.cs  (AVX-512F + AVX512-BF16)
#   gemm_f32.c      -> Modules/F32GemmCode.cs  (AVX-512F)
#   gemm_bf16.c     -> Modules/Bf16GemmCode.cs (AVX-512F/BW/VL + AVX512-BF16)
# Fails if an object needs relocations or has data outside .text, which embedded code could not
# carry. Each file's one exported function must come first in .text (its helpers are inlined).
# pack_panels.h holds the weight packing and the sums' start that both GEMMs inline.
set -euo pipefail
cd "$(dirname "$0")/.."
native=src/RecurrentGemma.Model/Native
modules=src/RecurrentGemma.Model/Modules
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

build() {   # build <source name> <class name> <gcc ISA flags...>
  local name=$1 class=$2; shift 2
  local src=$native/$name out=$modules/$class.cs
  gcc -O2 -fno-jump-tables "$@" -fno-asynchronous-unwind-tables -fno-stack-protector -fcf-protection=none \
      -fno-pic -c "$src" -o "$tmp/k.o"
  if objdump -r "$tmp/k.o" | grep -q 'R_X86'; then echo "relocations in $name: it cannot be embedded" >&2; exit 1; fi
  objdump -h "$tmp/k.o" | while read -r _ section size _; do
    case "$section" in .data*|.rodata*|.bss*) if [ $((16#$size)) -gt 0 ]; then echo "data section $section in $name" >&2; exit 1; fi ;; esac
  done
  objcopy -O binary --only-section=.text "$tmp/k.o" "$tmp/k.bin"
  {
    echo "namespace RecurrentGemma.Model.Modules;"
    echo
    echo "/// <summary>"
    echo "/// Machine code of Native/$name (x86-64, System V calling convention) as base64, written by"
    echo "/// scripts/native-kernels.sh with $(gcc --version | head -1). Do not edit by hand."
    echo "/// </summary>"
    echo "internal static class $class"
    echo "{"
    echo "    static readonly byte[] Code = Convert.FromBase64String(\"\"\""   # line breaks are ignored by the decoder
    base64 -w 100 "$tmp/k.bin" | sed 's/^/        /'
    echo "        \"\"\");"
    echo
    echo "    public static ReadOnlySpan<byte> Bytes => Code;"
    echo "}"
  } > "$out"
  echo "wrote $out ($(stat -c %s "$tmp/k.bin") bytes of code)"
}

build gemv_bf16_dot.c Bf16DotCode -mavx512f -mavx512bf16
build gemm_f32.c F32GemmCode -mavx512f -mfma
build gemm_bf16.c Bf16GemmCode -mavx512f -mavx512bw -mavx512vl -mavx512bf16
