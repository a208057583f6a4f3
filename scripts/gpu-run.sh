#!/usr/bin/env bash
# The GPU check on a machine without the .NET SDK: runs what scripts/gpu-bundle.sh packed
# (.gpu/bundle.tar.xz, carried beside this repository) against the libtorch of the machine's
# PyTorch install. In order, each step's output in $OUT (or ./gpu-out):
#   1. the machine: GPU, PyTorch and its libtorch;
#   2. which of the libtorch symbols TorchSharp's bridge asks for that libtorch lacks (the bridge
#      was built against libtorch 2.10; another version may have renamed some);
#   3. the model and engine tests on the device (RGEMMA_TEST_DEVICE);
#   4. the step benchmark on the device, its section of docs/benchmarks.md copied out;
#   5. the engine benchmark on the device (2B bf16 on a GPU: aggregate tok/s at 1–32 sequences),
#      and with --engine-levels a second run at the levels given (a GPU's batches go wider).
# Before the tests, one forward through the bundled CLI on the device says at once whether the
# device works at all. --budget SECONDS (the device call's limit, less a margin) caps each step so
# that a hang in one still leaves time for the later ones; a step with too little time left is
# skipped and said so. --steps LIST runs only those named (cli, model-tests, engine-tests,
# step-bench, engine-bench; engine-wide runs where --engine-levels is given): a second call
# within one lease redoes only what the first left open. --step-sequences LIST: the step
# benchmark's batches (default 1,8); on a GPU it also times the 2B forward part by part.
#   scripts/gpu-run.sh --device cuda --budget 470 --step-sequences 1,8,64,256 --engine-levels 1,8,32,64,128,256   # on a GPU
#   scripts/gpu-run.sh --device cpu --torch-lib DIR                 # the same end to end on a CPU
#   scripts/gpu-run.sh --device cpu --torch-lib DIR --quick         # CI's check of the bundle: steps 1–2,
#       the reference and device-step test classes only, and one CLI call instead of the benchmarks
#   ... --device cpu --tensor-path   # the tests with the CPU's own paths off: the ops a GPU runs
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda
torchlib=""
engine_shape=""
quick=0
tensor_path=0
budget=0
engine_levels=""
step_sequences=""
steps="cli,model-tests,engine-tests,step-bench,engine-bench,engine-wide"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --torch-lib) torchlib="$2"; shift 2 ;;
    --engine-shape) engine_shape="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --tensor-path) tensor_path=1; shift ;;
    --budget) budget="$2"; shift 2 ;;
    --engine-levels) engine_levels="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --step-sequences) step_sequences="$2"; shift 2 ;;
    *) echo "usage: $0 [--device cuda|cpu] [--torch-lib DIR] [--engine-shape 2b|small] [--quick] [--tensor-path] [--budget SECONDS] [--engine-levels N,N,...] [--steps a,b,...] [--step-sequences N,N,...]" >&2; exit 2 ;;
  esac
done
# The engine benchmark's shape: the real 2B on a GPU, the small one where a CPU runs the check.
[ -n "$engine_shape" ] || { [ "$device" = cpu ] && engine_shape=small || engine_shape=2b; }
want() { [[ ",$steps," == *",$1,"* ]]; }
# The seconds kept for the steps after this one that will run (a skipped step keeps nothing).
reserve_after() {
  local seen=0 sum=0 s name
  for s in model-tests:120 engine-tests:100 step-bench:100 engine-bench:90 engine-wide:60; do
    name=${s%%:*}
    if [ $seen = 1 ] && want "$name" && { [ "$name" != engine-wide ] || [ -n "$engine_levels" ]; }; then
      sum=$((sum + ${s##*:}))
    fi
    [ "$name" = "$1" ] && seen=1
  done
  echo $sum
}
# A step's time limit: its own default, or less where the budget must still cover the steps
# after it (their reserve); "0" when fewer than 20 seconds would be left (the step is skipped).
deadline=$(( budget > 0 ? $(date +%s) + budget : 0 ))
limit() {
  local t=$1 reserve=$2
  if [ "$deadline" -gt 0 ]; then
    local left=$(( deadline - $(date +%s) - reserve ))
    [ "$left" -lt "$t" ] && t=$left
  fi
  [ "$t" -lt 20 ] && t=0
  echo "$t"
}
# At most 8 files come back from a device call: the log, the missing symbols, two test logs, two
# benchmark logs and their two sections.
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out"
log="$out/gpu-run.log"
exec > >(tee -a "$log") 2>&1

echo "== 1. machine ($(date -u +%FT%TZ), bundle of commit $(cat .gpu/bundle.commit 2>/dev/null || echo '?'))"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if [ -z "$torchlib" ]; then
  torchlib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) || true
  python3 -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())' 2>/dev/null || true
fi
[ -n "$torchlib" ] && [ -f "$torchlib/libtorch_cpu.so" ] || { echo "no libtorch found (pass --torch-lib DIR)"; exit 1; }
echo "libtorch: $torchlib"

bundle="$PWD/.gpu/unpacked"   # inside the tree (ignored by git): two checks on one machine do not collide
rm -rf "$bundle" && mkdir -p "$bundle"
tar -C "$bundle" -xJf .gpu/bundle.tar.xz || { echo "no .gpu/bundle.tar.xz: run scripts/gpu-bundle.sh and carry .gpu"; exit 1; }
# The test binaries find the fixtures by walking up to the solution file: they sit inside the tree.
rm -rf .gpu/run && mkdir -p .gpu/run && mv "$bundle"/cli "$bundle"/tests .gpu/run/
export DOTNET_ROOT="$bundle/dotnet" PATH="$bundle/dotnet:$PATH"
export DOTNET_ROLL_FORWARD=Major DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
export NUGET_PACKAGES=/nonexistent   # the runner must take the bundle's binaries, not a package cache's
export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RGEMMA_TEST_DEVICE="$device"
dotnet --list-runtimes

echo "== 2. libtorch symbols the bridge needs and this libtorch lacks"
bridge=.gpu/run/cli/runtimes/linux-x64/native/libLibTorchSharp.so
if command -v nm >/dev/null; then
  # Names without their version suffix (@...); the bridge's other needs (C and C++ runtimes) are
  # left out by keeping only names that mention libtorch's namespaces.
  nm -D --defined-only "$torchlib"/lib{torch,torch_cpu,c10,torch_cuda,c10_cuda}.so 2>/dev/null | awk '{ sub(/@.*/, "", $NF); print $NF }' | sort -u > /tmp/libtorch-defined.txt
  nm -D --undefined-only "$bridge" | awk '$1 == "U" { sub(/@.*/, "", $NF); print $NF }' | grep -E '(2at|3c10|5torch|6caffe2)' | sort -u > /tmp/bridge-needs.txt
  comm -23 /tmp/bridge-needs.txt /tmp/libtorch-defined.txt > "$out/missing-symbols.txt"
  echo "$(wc -l < /tmp/bridge-needs.txt) libtorch symbols needed, $(wc -l < "$out/missing-symbols.txt") missing (list: missing-symbols.txt)"
  head -20 "$out/missing-symbols.txt" | (command -v c++filt >/dev/null && c++filt || cat)
else
  echo "no nm on this machine: skipped"
fi

status=0
paths=""
if [ $tensor_path = 1 ]; then
  export RGEMMA_TEST_CPU_PATHS=off   # read by the test assemblies: CpuPaths off, libtorch's tensor ops only
  paths=" (CPU paths off: the tensor ops a GPU runs)"
fi
if [ $quick = 0 ] && want cli; then
  echo "== 3a. one forward through the CLI on $device"
  timeout 90 dotnet .gpu/run/cli/rgemma.dll logits --model tests/fixtures/griffin/tiny --tokens 2,17,42 --device "$device" > /tmp/gpu-run-smoke.txt 2>&1 ||
    { status=1; echo "the CLI failed on $device:"; }
  head -c 600 /tmp/gpu-run-smoke.txt; echo
fi
echo "== 3. model and engine tests on $device$paths"
for suite in Model Engine; do
  [ $quick = 1 ] || want "${suite,,}-tests" || continue
  dll=".gpu/run/tests/${suite,,}/RecurrentGemma.$suite.Tests.dll"
  filter=()
  # Tests whose model runs on the test device but whose assertion is about a CPU path (its kernels,
  # its bit-for-bit batch invariance, its thread calibration) are marked Device=cpu-only.
  [ "$device" != cpu ] || [ $tensor_path = 1 ] && filter+=(-notrait "Device=cpu-only")
  # Tests of the CPU's kernels themselves (on CPU tensors) need those paths on.
  [ $tensor_path = 1 ] && filter+=(-notrait "Paths=cpu-kernels")
  # Each test's start and finish in the log: a test that hangs on a device is named there.
  [ $quick = 0 ] && filter+=(-verbose)
  if [ $quick = 1 ]; then
    [ $suite = Model ] && filter+=(-class RecurrentGemma.Model.Tests.ReferenceLogitsTests) || filter+=(-class RecurrentGemma.Engine.Tests.DeviceStepTests)
  fi
  t=$(limit 420 "$(reserve_after "${suite,,}-tests")")
  [ "$t" = 0 ] && { echo "$suite tests skipped: out of budget"; status=1; continue; }
  timeout "$t" dotnet "$bundle/runner/xunit.console.dll" "$dll" "${filter[@]}" -nocolor -parallel none \
    > "$out/tests-${suite,,}.log" 2>&1 || { rc=$?; status=1; echo "$suite tests: exit $rc (limit $t s)"; }
  grep -E '\[FAIL\]|Total:' "$out/tests-${suite,,}.log" | head -40
  grep -q 'Total:' "$out/tests-${suite,,}.log" || { status=1; tail -20 "$out/tests-${suite,,}.log"; }   # the runner itself failed
done

if [ $quick = 1 ]; then
  echo "== 4. the CLI on $device (quick: no benchmarks)"
  timeout 120 dotnet .gpu/run/cli/rgemma.dll logits --model tests/fixtures/griffin/tiny --tokens 2,17,42 --device "$device" \
    > "$out/bench.log" 2>&1 || status=1
  head -c 300 "$out/bench.log"; echo
  echo "gpu-run on $device (quick): $([ $status = 0 ] && echo passed || echo FAILED) (logs in $out)"
  exit $status
fi

echo "== 4. step benchmark on $device"
t=$(limit 300 "$(reserve_after step-bench)")
if ! want step-bench; then
  echo "not asked for (--steps)"
elif [ "$t" = 0 ]; then
  echo "skipped: out of budget"; status=1
elif timeout "$t" dotnet .gpu/run/cli/rgemma.dll bench --suite step --device "$device" --repeats 7 ${step_sequences:+--sequences "$step_sequences"} --section "device-$device" --out docs/benchmarks.md \
  > "$out/bench.log" 2>&1; then
  sed -n "/<!-- bench:device-$device:begin -->/,/<!-- bench:device-$device:end -->/p" docs/benchmarks.md > "$out/benchmarks-device-$device.md"
  cat "$out/benchmarks-device-$device.md"
else
  status=1
  tail -30 "$out/bench.log"
fi
echo "== 5. engine benchmark on $device ($engine_shape, bf16)"
t=$(limit 300 "$(reserve_after engine-bench)")
if ! want engine-bench; then
  echo "not asked for (--steps)"
elif [ "$t" = 0 ]; then
  echo "skipped: out of budget"; status=1
elif timeout "$t" dotnet .gpu/run/cli/rgemma.dll bench --suite engine --shape "$engine_shape" --dtype bf16 --repeats 3 --device "$device" \
  --section "engine-$device" --out docs/benchmarks.md > "$out/engine-bench.log" 2>&1; then
  sed -n "/<!-- bench:engine-$device:begin -->/,/<!-- bench:engine-$device:end -->/p" docs/benchmarks.md > "$out/benchmarks-engine-$device.md"
  cat "$out/benchmarks-engine-$device.md"
else
  status=1
  tail -30 "$out/engine-bench.log"
fi
if [ -n "$engine_levels" ] && want engine-wide; then
  # Same files as step 5 (at most 8 come back): its log appended, its section after step 5's.
  echo "== 6. engine benchmark on $device at $engine_levels sequences"
  t=$(limit 300 "$(reserve_after engine-wide)")
  if [ "$t" = 0 ]; then
    echo "skipped: out of budget"; status=1
  elif timeout "$t" dotnet .gpu/run/cli/rgemma.dll bench --suite engine --shape "$engine_shape" --dtype bf16 --repeats 3 --device "$device" \
    --levels "$engine_levels" --section "engine-$device-wide" --out docs/benchmarks.md >> "$out/engine-bench.log" 2>&1; then
    sed -n "/<!-- bench:engine-$device-wide:begin -->/,/<!-- bench:engine-$device-wide:end -->/p" docs/benchmarks.md | tee -a "$out/benchmarks-engine-$device.md"
  else
    status=1
    tail -30 "$out/engine-bench.log"
  fi
fi
echo "gpu-run on $device: $([ $status = 0 ] && echo passed || echo FAILED) (logs in $out)"
exit $status
