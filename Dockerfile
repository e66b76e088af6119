# The toolkit in a container: Debian bookworm, dependencies from
# scripts/setup.sh, binaries built and installed in /usr/local.
FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        make gcc libc6-dev pkg-config ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/setup.sh && make && make install PREFIX=/usr/local
ENTRYPOINT ["/bin/bash"]
