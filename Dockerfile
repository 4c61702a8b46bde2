# Keyhaven in a container: a static-ish release binary on distroless, as a non-root user,
# with its data (SQLite database, pepper, master key) on the /data volume.
#
#   docker build -t keyhaven .
#   docker run -d --name keyhaven -p 8080:8080 -v keyhaven-data:/data keyhaven
#   docker exec keyhaven keyhaven root-key create --scopes '*' --name admin
#
# On first start the root key goes to /data/initial-root-key (stdout is not a terminal);
# `docker exec … root-key create` above makes another one without reading that file.
# Several nodes: set KEYHAVEN_DATABASE_URL=postgres://… and KEYHAVEN_PEPPER (the same on
# every node) instead of relying on the volume.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p keyhaven \
 && strip target/release/keyhaven \
 && mkdir -p /out/data \
 && cp target/release/keyhaven /out/keyhaven

# glibc and libgcc only, no shell, no package manager; uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/keyhaven /usr/local/bin/keyhaven
COPY --from=build --chown=65532:65532 /out/data /data
ENV KEYHAVEN_DATA_DIR=/data \
    KEYHAVEN_LISTEN=0.0.0.0:8080 \
    KEYHAVEN_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/keyhaven", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/keyhaven"]
CMD ["serve"]
