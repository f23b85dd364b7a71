# perfstream in a container. Build:  docker build -t perfstream .
# Run (it loads BPF programs and opens per-CPU perf events, so it needs the host's kernel interfaces):
#   docker run --rm --privileged --pid=host -v /sys/kernel/tracing:/sys/kernel/tracing \
#     -v "$PWD:/data" perfstream record --probe exec --duration 10s -o /data/exec.data
# Instead of --privileged: --cap-add BPF --cap-add PERFMON --cap-add SYS_RESOURCE (and SYS_ADMIN to mount
# tracefs inside the container when the host's is not mounted in).

FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DPERFSTREAM_BUILD_TESTS=OFF -DPERFSTREAM_BUILD_BENCH=OFF \
 && cmake --build /build -j "$(nproc)" --target perfstream \
 && strip /build/collector/perfstream

FROM debian:12-slim
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libbpf1 libelf1 zlib1g libzstd1 libprotobuf32 libssl3 librdkafka1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/collector/perfstream /usr/local/bin/perfstream
WORKDIR /data
ENTRYPOINT ["perfstream"]
CMD ["--help"]
