#!/usr/bin/env bash
# Packs what the GPU check needs on a machine with a GPU and PyTorch but no .NET SDK and no
# package feed (the lent GPU machines of this project's workplace are such): the .NET runtime,
# the Release builds of the CLI and of the model and engine tests, and xUnit's console runner,
# without any libtorch binaries — on that machine TorchSharp's native bridge (libLibTorchSharp.so)
# is linked against the libtorch of its PyTorch install instead. Writes .gpu/bundle.tar.xz
# (ignored by git), to be carried beside the repository; scripts/gpu-run.sh unpacks and runs it.
#   scripts/gpu-bundle.sh            # here, with the SDK and the restored packages
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

out=.gpu
stage="$out/stage"
rm -rf "$stage" && mkdir -p "$stage"

echo "== build (Release)"
dotnet build src/RecurrentGemma.Cli -c Release -v quiet
dotnet build tests/RecurrentGemma.Engine.Tests -c Release -v quiet   # builds the model tests too
dotnet restore build/xunit-console/XunitConsole.proj -v quiet

# A build's output, less every native binary but TorchSharp's bridge (patched by
# build/TorchBackend.targets to load on older C++ runtimes).
copy_build() {
  local from="$1" to="$2"
  mkdir -p "$to/runtimes/linux-x64/native"
  find "$from" -maxdepth 1 -type f ! -name '*.pdb' -exec cp {} "$to/" \;
  cp "$from/runtimes/linux-x64/native/libLibTorchSharp.so" "$to/runtimes/linux-x64/native/"
  # Also beside the assemblies: xUnit's console runner resolves the package's relative path from
  # the working directory, and TorchSharp's own load by name looks in the assembly's folder.
  cp "$from/runtimes/linux-x64/native/libLibTorchSharp.so" "$to/"
}
copy_build src/RecurrentGemma.Cli/bin/Release/net10.0 "$stage/cli"
copy_build tests/RecurrentGemma.Model.Tests/bin/Release/net10.0 "$stage/tests/model"
copy_build tests/RecurrentGemma.Engine.Tests/bin/Release/net10.0 "$stage/tests/engine"

runner="${NUGET_PACKAGES:-$HOME/.nuget/packages}/xunit.runner.console/2.4.1/tools/netcoreapp2.0"
mkdir -p "$stage/runner" && cp "$runner"/* "$stage/runner/"

# The runtime the SDK here runs on: its host, host resolver and shared framework (no ASP.NET:
# the CLI and these tests do not use it).
root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
fx="$(ls -d "$root"/shared/Microsoft.NETCore.App/10.* | sort -V | tail -1)"
mkdir -p "$stage/dotnet/shared/Microsoft.NETCore.App" "$stage/dotnet/host"
cp "$root/dotnet" "$stage/dotnet/"
cp -r "$root/host/fxr" "$stage/dotnet/host/"
cp -r "$fx" "$stage/dotnet/shared/Microsoft.NETCore.App/"

echo "== pack"
tar -C "$stage" -cf - . | xz -T0 -6 > "$out/bundle.tar.xz"
rm -rf "$stage"
# "-dirty": built from uncommitted changes; "no git": built in a copy of the tree (CI's check of the bundle).
git describe --always --dirty --abbrev=12 > "$out/bundle.commit" 2>/dev/null || echo "no git" > "$out/bundle.commit"
size=$(stat -c %s "$out/bundle.tar.xz")
echo "wrote $out/bundle.tar.xz ($((size / 1024 / 1024)) MiB, runtime $(basename "$fx"), commit $(cat "$out/bundle.commit"))"
# The device tool carries at most 64 MiB in all, the repository's tracked files included.
if tracked=$(git ls-files -z 2>/dev/null | xargs -0 -r stat -c %s | awk '{ s += $1 } END { print s + 0 }') && [ "$tracked" -gt 0 ]; then
  echo "with the tracked files: $(((size + tracked) / 1024 / 1024)) MiB of the 64 MiB a device call carries"
fi
