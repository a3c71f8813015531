# dtrcache: one static binary on an empty base. Build it with `make image`,
# which compiles the binary first (CGO_ENABLED=0) and assembles the build
# context in dist/dtrcache (binary, CA certificates, a non-root user), so no
# base image has to be pulled.
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY passwd group /etc/
COPY --chown=65532:65532 var/ /var/
COPY dtrcache /dtrcache
USER 65532:65532
VOLUME ["/var/lib/dtrcache"]
EXPOSE 5000 5443 3128
ENTRYPOINT ["/dtrcache"]
CMD ["--help"]
