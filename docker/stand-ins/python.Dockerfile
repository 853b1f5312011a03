# Stand-in for python:<3.11>-slim-bookworm (build.sh): Debian bookworm's own Python 3.11
# with pip, `python` on the PATH, and pip free to install into /usr/local as in the real
# image (no "externally managed" guard).
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
        python-is-python3 ca-certificates \
    && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
    && rm -rf /var/lib/apt/lists/*
# The build host's CA bundle for pip (see build.sh); outside /etc/ssl/certs on purpose.
COPY host-ca.crt /usr/local/share/stand-in/host-ca.crt
ENV PIP_CERT=/usr/local/share/stand-in/host-ca.crt \
    LANG=C.UTF-8
LABEL org.export-pipeline.stand-in=python
CMD ["python3"]
