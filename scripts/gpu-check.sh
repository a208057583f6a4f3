#!/usr/bin/env bash
# The GPU check: the model and engine test suites and the step benchmark on one device.
#   scripts/gpu-check.sh --device cuda   # on a GPU host: CUDA build, tests on CUDA, GPU section of docs/benchmarks.md
#   scripts/gpu-check.sh --device cpu    # the same script end to end on the CPU build (what CI machines can run)
# Only the device changes between the two: the tests read RGEMMA_TEST_DEVICE, the benchmark --device.
set -euo pipefail
cd "$(dirname "$0")/.."
device=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    *) echo "usage: $0 [--device cpu|cuda]" >&2; exit 2 ;;
  esac
done
backend=cpu
case "$device" in cuda*) backend=cuda ;; cpu) ;; *) echo "unknown device $device" >&2; exit 2 ;; esac
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 RGEMMA_TEST_DEVICE="$device"

echo "== build (TorchBackend=$backend)"
dotnet build RecurrentGemma.Server.sln -c Release -p:TorchBackend="$backend" -v quiet
[ "$backend" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

echo "== model and engine tests on $device"
status=0
# Off the CPU, tests that assert what only the CPU's paths promise (marked Device=cpu-only) are left out.
filter=()
[ "$device" != cpu ] && filter=(--filter "Device!=cpu-only")
for project in tests/RecurrentGemma.Model.Tests tests/RecurrentGemma.Engine.Tests; do
  dotnet test "$project" -c Release --no-build -p:TorchBackend="$backend" --blame-hang-timeout 5m "${filter[@]}" || status=1
done

echo "== step benchmark on $device"
dotnet run -c Release --no-build -p:TorchBackend="$backend" --project src/RecurrentGemma.Cli -- \
  bench --suite step --device "$device" --repeats 7 --section "device-$device" --out docs/benchmarks.md
echo "gpu-check on $device: tests $([ $status = 0 ] && echo passed || echo FAILED); benchmark written to docs/benchmarks.md (section device-$device)"
exit $status
