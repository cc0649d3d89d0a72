# swarmsec's image: the static binary on scratch. There is no builder stage:
# the binary is built by `make image` on the host (Go modules are the only
# thing fetched), so the build needs no base image from a registry.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="swarmsec" \
      org.opencontainers.image.description="Network policy for Docker Swarm" \
      org.opencontainers.image.version="${VERSION}"
COPY bin/swarmsec /swarmsec
# The node agent runs the node's own iptables (the backend and version
# Docker uses there): the stack mounts the host's /usr read-only, and these
# links make a merged-/usr root of it. The controller never uses them.
COPY deploy/rootfs/ /
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
COPY deploy/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Not root; the Docker socket's group is the deployer's choice (the stack
# file's user: field).
USER 65532:65532
ENTRYPOINT ["/swarmsec"]
CMD ["run", "--manifests", "/manifests", "--log-format", "json"]
