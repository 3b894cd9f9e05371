# quorum-cache container image.
#
#   docker build -t quorum-cache:latest .
#
# Stages (docs/docker.md has the recipes):
#   runtime-base      the runtime image without the binary: non-root user, ports,
#                     health check, entry point
#   runtime-prebuilt  runtime-base + a binary built outside Docker on the same
#                     Debian release as RUNTIME_IMAGE (glibc must match):
#                       cargo build --release
#                       docker build --target runtime-prebuilt -t quorum-cache:latest .
#   builder           compiles the release binary in RUST_IMAGE
#   runtime           (default, last) runtime-base + the binary from builder
#
# RUST_IMAGE and RUNTIME_IMAGE must be of the same Debian release.
# runtime-prebuilt comes before builder on purpose: the legacy (non-BuildKit) builder
# runs every stage up to the target, so `--target runtime-prebuilt` then never needs
# RUST_IMAGE. BuildKit skips the stages the target does not use; with the legacy
# builder a default build also runs runtime-prebuilt, so there
# target/release/quorum-cache must exist (or use BuildKit, the default since Docker 23).

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime-base

RUN groupadd --gid 10001 quorum-cache \
    && useradd --uid 10001 --gid quorum-cache --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin quorum-cache

# quorum-cache reads an optional .env from its working directory (mount one here);
# the environment (docker run -e, compose, Kubernetes) wins over it.
WORKDIR /etc/quorum-cache

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# 8080: gRPC (clients and peers; the port of ADDR). 9080: /metrics, /healthz, /readyz.
EXPOSE 8080 9080

# `quorum-cache health` asks the node's own listener (LISTEN_ADDR, loopback when it is
# 0.0.0.0) for grpc.health.v1 SERVING
# (it connects within 2 s and answers within 3 s, so --timeout=6s never cuts it short).
HEALTHCHECK --interval=10s --timeout=6s --start-period=15s --retries=3 \
    CMD ["quorum-cache", "health"]

# Exec form: the binary is PID 1 and gets SIGTERM from `docker stop` itself; it drains
# for up to SHUTDOWN_TIMEOUT (8 s, below docker stop's 10 s) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/quorum-cache"]

# ---------------------------------------------------------------------------------
FROM runtime-base AS runtime-prebuilt

# A path inside the build context (.dockerignore lets target/release/quorum-cache through).
ARG PREBUILT_BINARY=target/release/quorum-cache
COPY ${PREBUILT_BINARY} /usr/local/bin/quorum-cache
RUN ["/usr/local/bin/quorum-cache", "--version"]

# ---------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder

WORKDIR /build
# The protobuf compiler is vendored (protox): Rust and the C linker of the image suffice.
COPY . .
RUN cargo build --release --locked --bin quorum-cache \
    && install -D -m 0755 target/release/quorum-cache /out/quorum-cache

# ---------------------------------------------------------------------------------
FROM runtime-base AS runtime

COPY --from=builder /out/quorum-cache /usr/local/bin/quorum-cache
RUN ["/usr/local/bin/quorum-cache", "--version"]
