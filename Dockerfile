# dbbind's container image: a static-ish Rust binary on a distroless base, non-root.
#   docker build -t dbbind:0.1.0 .   (the chart's appVersion, the tag it pulls by default)
# Build stage: the same locked release build the test suite runs (e2e/tests/image.rs).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --release --package dbbind --bin dbbind

# Final stage: only the binary, on a base with glibc (rustls uses ring) and no shell, as the
# distroless nonroot user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/dbbind /dbbind
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/dbbind"]
CMD ["serve"]
