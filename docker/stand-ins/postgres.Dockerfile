# Stand-in for postgres:15.x-bookworm (build.sh): Debian bookworm's PostgreSQL 15 with an
# entrypoint doing what the official image's does for this project: initialize
# /var/lib/postgresql/data on first start with POSTGRES_USER/POSTGRES_PASSWORD, run
# /docker-entrypoint-initdb.d/*.sh against a server on its socket only, then serve on
# every address with password (scram-sha-256) authentication, as user postgres.
ARG BASE
FROM ${BASE}
RUN mkdir -p /etc/postgresql-common \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql /var/lib/postgresql/data \
    && chown -R postgres:postgres /var/run/postgresql /var/lib/postgresql \
    && chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
LABEL org.export-pipeline.stand-in=postgres
ENTRYPOINT ["sh", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
