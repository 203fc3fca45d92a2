# One image, three binaries: pick the service with the container command.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin auth-service --bin audit-service --bin gateway --bin all-in-one

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p /app/data && chown app /app/data
COPY --from=build /src/target/release/auth-service /src/target/release/audit-service \
     /src/target/release/gateway /src/target/release/all-in-one /usr/local/bin/
WORKDIR /app
USER 10001
ENV LOG_FORMAT=json
CMD ["all-in-one"]
