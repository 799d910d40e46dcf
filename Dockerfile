# Multi-stage build: a static receiver binary on a distroless, non-root base.
#
# Base images are pinned by digest, so a rebuild of a commit gets the same
# bases; the tag stays as the readable name. The builder is the Go release
# go.mod's toolchain line names: the official image builds with its own Go
# (GOTOOLCHAIN=local), so a floating 1.26 tag could build with an older,
# vulnerable standard library. To move either, bump the tag and take the
# new digest from `crane digest IMAGE:TAG` (or `docker buildx imagetools
# inspect`), which is the multi-platform index digest.
FROM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/receiver ./cmd/receiver \
 && mkdir -p /out/data/nats

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/receiver /usr/local/bin/receiver
# The example config holds no secret and no fallback for one: the container
# refuses to start until WECOM_ARCHIVE_TOKEN, WECOM_ARCHIVE_AES_KEY,
# WECOM_ARCHIVE_SUITE_SECRET and WECOM_ARCHIVE_PERMANENT_CODE are set (and
# refuses WeCom's published sample values), naming what is missing.
COPY configs/receiver.example.yaml /etc/receiver/receiver.yaml
# Owned by the distroless nonroot user (65532), so the store is writable.
COPY --from=build --chown=65532:65532 /out/data /data
# The example config reads these; pass the secrets as environment too
# (docker run --env-file, or a Kubernetes Secret).
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
