# The toolkit in a container (the toolkit service of docker-compose.yml):
# Debian bookworm, dbm's dependencies from scripts/setup.sh, the tools
# built and installed in /usr/local (bin, share/man, share/dbm/runbooks),
# the checkout in /src (runbooks/ there use the build in /src/build).  It
# waits; run commands in it with `docker compose exec toolkit ...`.
FROM debian:bookworm-slim
# the C library's headers: a desktop or server install has them, the slim
# image does not, and setup.sh installs gcc without its recommendations
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/setup.sh && rm -rf /var/lib/apt/lists/* && \
    make && make install PREFIX=/usr/local
CMD ["sleep", "infinity"]
