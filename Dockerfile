# Multi-stage build: a static receiver binary on a distroless, non-root base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/receiver ./cmd/receiver \
 && mkdir -p /out/data/nats

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/receiver /usr/local/bin/receiver
COPY configs/receiver.example.yaml /etc/receiver/receiver.yaml
# Owned by the distroless nonroot user (65532), so the store is writable.
COPY --from=build --chown=65532:65532 /out/data /data
# The example config reads these; mount real secrets as environment too.
ENV RECEIVER_CONFIG=/etc/receiver/receiver.yaml \
    RECEIVER_HTTP_LISTEN=:8080 \
    RECEIVER_STORE_DIR=/data/nats \
    RECEIVER_NATS_LISTEN=127.0.0.1:4222
# The embedded JetStream store; keep it on a volume so records survive restarts.
VOLUME ["/data"]
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/receiver"]
CMD ["serve"]
