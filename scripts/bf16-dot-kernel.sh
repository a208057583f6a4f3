#!/usr/bin/env bash
# Compiles src/RecurrentGemma.Model/Native/gemv_bf16_dot.c and writes its machine code into
# src/RecurrentGemma.Model/Modules/Bf16DotCode.cs (a developer step, needs gcc and binutils;
# the build and the tests only use the committed bytes). Fails if the object needs relocations
# or has data outside .text, which embedded code could not carry.
set -euo pipefail
cd "$(dirname "$0")/.."
src=src/RecurrentGemma.Model/Native/gemv_bf16_dot.c
out=src/RecurrentGemma.Model/Modules/Bf16DotCode.cs
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
gcc -O2 -fno-jump-tables -mavx512f -mavx512bf16 -fno-asynchronous-unwind-tables -fno-stack-protector -fcf-protection=none \
    -fno-pic -c "$src" -o "$tmp/k.o"
if objdump -r "$tmp/k.o" | grep -q 'R_X86'; then echo "relocations in the kernel: it cannot be embedded" >&2; exit 1; fi
objdump -h "$tmp/k.o" | while read -r _ name size _; do
  case "$name" in .data*|.rodata*|.bss*) if [ $((16#$size)) -gt 0 ]; then echo "data section $name in the kernel" >&2; exit 1; fi ;; esac
done
objcopy -O binary --only-section=.text "$tmp/k.o" "$tmp/k.bin"
bytes=$(od -An -v -tx1 "$tmp/k.bin" | tr -s ' \n' ' ' | sed -E 's/^ //; s/ $//; s/([0-9a-f]{2})/0x\1,/g' | fold -w 96 | sed 's/^ *//; s/^/        /; s/ *$//')
{
  echo "namespace RecurrentGemma.Model.Modules;"
  echo
  echo "/// <summary>"
  echo "/// Machine code of Native/gemv_bf16_dot.c (x86-64, System V calling convention), written by"
  echo "/// scripts/bf16-dot-kernel.sh with $(gcc --version | head -1). Do not edit by hand."
  echo "/// </summary>"
  echo "internal static class Bf16DotCode"
  echo "{"
  echo "    public static ReadOnlySpan<byte> Bytes =>"
  echo "    ["
  echo "$bytes"
  echo "    ];"
  echo "}"
} > "$out"
echo "wrote $out ($(stat -c %s "$tmp/k.bin") bytes of code)"
