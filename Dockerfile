# syntax=docker/dockerfile:1
# The pwreset-operator image: a static-enough Rust binary on distroless (glibc, no shell).
#
#   docker build -t <registry>/pwreset-operator:0.1.0 .
#
# The binary links only libc, libm and libgcc_s (TLS is rustls with ring: no OpenSSL), which
# gcr.io/distroless/cc-debian12 provides.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# The whole workspace: cargo needs every member to load it, but builds only the operator
# (nothing in the image depends on the emulator, the test harness or the benchmark).
COPY . .
# Cargo's registry and target dir are cache mounts, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pwreset-operator \
 && install -D -m 0755 target/release/pwreset-operator /out/pwreset-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="pwreset-operator" \
      org.opencontainers.image.description="Mirrors Microsoft Entra ID password-reset operations into PasswordResetOperation resources" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/pwreset-operator /pwreset-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/pwreset-operator"]
CMD ["run"]
