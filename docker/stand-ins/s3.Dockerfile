# Stand-in for MinIO and its client `mc` (build.sh): moto's standalone S3 server, which
# installs from PyPI, under the commands compose runs: `minio server /data ...` serves S3 on
# port 9000 and keeps its objects in /data across restarts (s3server.py); `mc` does the
# few things docker/minio/setup.sh and the healthcheck ask of it (mc.py). What differs
# from MinIO: docker/README.md, "Stand-in images".
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
COPY host-ca.crt /usr/local/share/stand-in/host-ca.crt
ENV PIP_CERT=/usr/local/share/stand-in/host-ca.crt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
RUN pip install "moto[s3,server]==5.2.6" "boto3==1.44.18" "werkzeug==3.1.9"
COPY s3server.py /usr/local/lib/stand-in/s3server.py
COPY mc.py /usr/local/lib/stand-in/mc.py
RUN printf '#!/bin/sh\nexec python3 /usr/local/lib/stand-in/s3server.py "$@"\n' > /usr/bin/minio \
    && printf '#!/bin/sh\nexec python3 /usr/local/lib/stand-in/mc.py "$@"\n' > /usr/bin/mc \
    && chmod 755 /usr/bin/minio /usr/bin/mc \
    && mkdir -p /data
# No VOLUME: compose mounts minio-data at /data; the mc use of this image needs none.
EXPOSE 9000
LABEL org.export-pipeline.stand-in=s3
ENTRYPOINT ["minio"]
CMD ["server", "/data"]
