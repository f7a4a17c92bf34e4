# sluice: server + dashboard, built with cargo-leptos. Untested here (no Docker engine on the
# development machines); see docs/deploy.md.
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-unknown-unknown \
 && cargo install cargo-leptos --version 0.3.10 --locked --features no_downloads \
 && cargo install wasm-bindgen-cli --version 0.2.129 --locked
# wasm-opt from npm's binaryen (the version end2end/package-lock.json pins, as scripts/setup
# installs it): Debian's binaryen (wasm-opt 108) is too old for this toolchain's wasm and breaks
# the release bundle. Node.js 20 comes from the official image.
COPY --from=node:20-bookworm-slim /usr/local/bin/node /usr/local/bin/node
COPY --from=node:20-bookworm-slim /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /src
COPY end2end/package.json end2end/package-lock.json end2end/
RUN cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
ENV PATH=/src/end2end/node_modules/.bin:$PATH
COPY . .
RUN wasm-opt --version && cargo leptos build --release

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
