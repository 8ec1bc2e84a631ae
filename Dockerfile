# syntax=docker/dockerfile:1
# Tributary images: one build stage, one small final stage per binary.
#   docker build --target gateway  -t tributary/gateway .
#   docker build --target ingester -t tributary/ingester .
#   docker build --target agent    -t tributary/agent .
#   docker build --target loadgen  -t tributary/loadgen .   (the demo sender)
# or `make images`. The final stages are distroless static: no shell, no
# package manager, user nonroot (65532); the binaries write only to mounted
# volumes, so the root filesystem can be read-only.

# The Go of go.mod's toolchain, pinned by version.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Modules first: this layer stays cached while only the sources change.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY pkg/ pkg/
COPY proto/ proto/
# Static binaries (no cgo, so no libc to load: the final stage has none);
# -trimpath keeps build paths out of them.
ENV CGO_ENABLED=0
# Exec form, so the test runs exactly these arguments.
RUN ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "/out/", "./cmd/gateway", "./cmd/ingester", "./cmd/agent", "./cmd/loadgen"]

# static-debian12:nonroot as of 2026-08-26, pinned by digest. To update:
#   crane digest gcr.io/distroless/static-debian12:nonroot
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS runtime
USER 65532:65532

FROM runtime AS gateway
COPY --from=build /out/gateway /usr/local/bin/gateway
# HTTP write endpoints, /metrics and health; OTLP gRPC.
EXPOSE 8080 4317
ENTRYPOINT ["/usr/local/bin/gateway"]

FROM runtime AS ingester
COPY --from=build /out/ingester /usr/local/bin/ingester
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/ingester"]

FROM runtime AS agent
COPY --from=build /out/agent /usr/local/bin/agent
# The WAL and positions live here; mount a volume (a hostPath on Kubernetes).
WORKDIR /var/lib/tributary-agent
EXPOSE 9095 4317 4318
ENTRYPOINT ["/usr/local/bin/agent"]

FROM runtime AS loadgen
COPY --from=build /out/loadgen /usr/local/bin/loadgen
ENTRYPOINT ["/usr/local/bin/loadgen"]
