# syntax=docker/dockerfile:1
#
# grader: the `grader` binary plus its judge prompts and the example config, on a distroless
# runtime as a non-root user. Build from the repository root:
#
#   docker build -t grader:0.1.0 .
#   docker run --rm -p 8080:8080 -e GRADER_DATABASE_URL=postgres://... -e OPENAI_API_KEY=... grader:0.1.0
#
# The image runs `grader serve` on 0.0.0.0:8080. Its defaults (the baked-in grader.toml is
# grader.example.toml) use SQLite in the working directory, which is only right for a single
# throwaway container: set GRADER_DATABASE_URL to PostgreSQL for anything else (k8s/ does).

ARG RUST_VERSION=1

# ---- builder ---------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# 1. Dependencies only, in their own layer: it is rebuilt when Cargo.toml or Cargo.lock
#    change, not on every source edit. The stub lib and main make `cargo build` compile every
#    dependency (sqlite is bundled, TLS is rustls with aws-lc built by `cc`: no system
#    libraries or cmake needed beyond the image's gcc). build.rs comes too: it writes the
#    token-counting vocabularies from tiktoken-rs (a build dependency) into OUT_DIR.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# 2. The crate itself. Everything `include_str!` needs (migrations/, the web UI's static
#    files, grader.example.toml) comes with the context; .dockerignore keeps target/ and the
#    rest out. COPY keeps the context's mtimes, which can be older than the stub build, so
#    touch the crate roots or cargo would keep the stub binary.
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin grader \
    && install -D -m 0755 target/release/grader /out/usr/local/bin/grader \
    && mkdir -p /out/app /data \
    && cp -r prompts /out/app/prompts \
    && install -D -m 0644 grader.example.toml /out/etc/grader/grader.toml

# ---- runtime ---------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates and /etc/passwd with `nonroot` (65532); no
# shell or package manager. The binary needs nothing else (sqlite is linked in, TLS is rustls).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ /
# /data: where a SQLite database may live (writable only when a volume is mounted there; the
# image's root filesystem is meant to be read-only).
COPY --from=builder --chown=65532:65532 /data /data
WORKDIR /app
ENV GRADER_ADDR=0.0.0.0:8080 \
    GRADER_CONFIG=/etc/grader/grader.toml \
    GRADER_PROMPTS_DIR=/app/prompts \
    GRADER_DATABASE_URL=sqlite:///data/grader.db \
    GRADER_LOG=info
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/grader"]
CMD ["serve"]
