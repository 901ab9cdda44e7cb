# `smolt serve` as a stateless container behind any load balancer: health probe, Prometheus
# metrics, graceful drain on SIGTERM. See README, "Containers".
#
#   docker build -t smolt .                      # compiles smolt in the Rust image (≈ 10 min)
#   docker build --build-arg SMOLT_BUILD=prebuilt --build-arg BUILD_IMAGE=debian:bookworm-slim -t smolt .
#                                                # packs target/release/smolt (cargo build --release -p smolt first)
#   docker run -p 8080:8080 -v ~/.cache/smolt/models:/models:ro smolt --adapter receipts=/adapters/receipts
#
# The image holds no model: mount the folder `smolt fetch` fills (read-only is fine) at /models,
# or bake the model and adapters into a derived image (deploy/Dockerfile.model). Arguments after
# the image name go to `smolt serve`.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# The build stage's image: the Rust one to compile; any image with a shell to pack a prebuilt
# binary (SMOLT_BUILD=prebuilt, BUILD_IMAGE=debian:bookworm-slim), which needs no Rust image.
ARG BUILD_IMAGE=${RUST_IMAGE}

FROM ${BUILD_IMAGE} AS build
ARG SMOLT_BUILD=source
WORKDIR /src
COPY . .
RUN if [ "$SMOLT_BUILD" = prebuilt ]; then \
      test -x target/release/smolt || { echo "no target/release/smolt: cargo build --release -p smolt" >&2; exit 1; }; \
    else \
      cargo build --release --locked -p smolt; \
    fi \
 && install -D target/release/smolt /out/smolt

FROM ${RUNTIME_IMAGE}
# curl for the health check; ca-certificates for --fallback / teacher endpoints over HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home smolt
COPY --from=build /out/smolt /usr/local/bin/smolt
ENV SMOLT_MODEL_DIR=/models
USER smolt
EXPOSE 8080
# Ready once every model and adapter has loaded (the server listens only then); 503 while it
# drains. Kubernetes: the same path as an httpGet readiness and liveness probe.
HEALTHCHECK --interval=5s --timeout=3s --start-period=120s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
# SIGTERM (docker stop, Kubernetes) stops accepting connections, finishes every request already
# in the batch, then exits 0: give it the grace period your longest answer needs
# (docker stop -t 60, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["smolt", "serve", "--host", "0.0.0.0", "--port", "8080"]
