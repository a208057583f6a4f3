# syntax=docker/dockerfile:1
# RecurrentGemma.Server image. GPU by default; CPU with --build-arg TORCH_BACKEND=cpu.
#   docker build -t recurrentgemma-server .
#   docker build -t recurrentgemma-server:cpu --build-arg TORCH_BACKEND=cpu .
# The model is never baked in: mount a Hugging Face snapshot directory at /models and point
# Model__Path at it (see docker-compose.yml and deploy/README.md).

ARG TORCH_BACKEND=cuda

# ---- build: a self-contained publish, so the runtime image needs no .NET install ----
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
ARG TORCH_BACKEND
WORKDIR /src
COPY Directory.Build.props Directory.Build.targets Directory.Packages.props appsettings.json ./
COPY build/ build/
COPY src/ src/
RUN dotnet restore src/RecurrentGemma.Server/RecurrentGemma.Server.csproj -r linux-x64 -p:TorchBackend=${TORCH_BACKEND}
RUN dotnet publish src/RecurrentGemma.Server/RecurrentGemma.Server.csproj --no-restore -c Release -r linux-x64 \
      --self-contained true -p:TorchBackend=${TORCH_BACKEND} -o /app

# ---- runtime: CUDA-capable Ubuntu 24.04, whose libstdc++ (GCC 14) has what TorchSharp needs
# (GLIBCXX_3.4.32). The CPU build runs on it too; only the bundled libtorch differs. ----
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS runtime
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/rgemma rgemma \
 && mkdir -p /models && chown rgemma /models
WORKDIR /app
COPY --from=build --chown=rgemma /app /app
USER 10001
ENV Model__Path=/models/model \
    Model__DType=bf16 \
    Model__Device=auto \
    Logs__Format=json \
    Urls=http://0.0.0.0:8000 \
    DOTNET_gcServer=1 \
    GLIBC_TUNABLES=glibc.malloc.arena_max=1
# One malloc arena from the start (glibc reads GLIBC_TUNABLES only at exec): outside a container
# the server re-runs itself once to get it (src/RecurrentGemma.Model/MemoryTuning.cs).
VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8000/health/live || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/RecurrentGemma.Server"]
