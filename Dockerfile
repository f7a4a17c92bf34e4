# sluice: server + dashboard, built with cargo-leptos. Untested here (no Docker engine on the
# development machines); see docs/deploy.md.
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-unknown-unknown \
 && cargo install cargo-leptos --version 0.3.10 --locked --features no_downloads \
 && cargo install wasm-bindgen-cli --version 0.2.129 --locked
RUN apt-get update && apt-get install -y --no-install-recommends binaryen && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo leptos build --release

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/sluice sluice && mkdir -p /var/lib/sluice && chown sluice /var/lib/sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY --from=build /src/target/site /usr/share/sluice/site
USER sluice
WORKDIR /var/lib/sluice
ENV SLUICE_ADDR=0.0.0.0:3000 LEPTOS_SITE_ROOT=/usr/share/sluice/site DATABASE_URL=sqlite://data/sluice.db
EXPOSE 3000
HEALTHCHECK CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3000"]
ENTRYPOINT ["sluice"]
