#!/bin/sh
# Stand-ins for the third-party images of the Docker deployment, for a Docker host that
# cannot pull them (no route to Docker Hub or quay.io), built from Debian's packages.
#
#   sh docker/stand-ins/build.sh          # from the repository root
#
# For each image the project names (the Python base of both Dockerfiles, and PostgreSQL,
# MinIO and the MinIO client of docker-compose.yml), in this order:
#   1. present in the engine already: nothing to do;
#   2. `docker pull` succeeds: the real image, nothing else to do;
#   3. otherwise a stand-in is built and tagged with the very same name, so the project's
#      Dockerfiles and compose file stay as they are on any Docker host.
# The stand-ins start from one Debian bookworm root file system (debootstrap, plain-http
# mirror), imported as export-pipeline-stand-in/debian:bookworm. docker/README.md,
# "Stand-in images", says what differs from the real images.
#
# Needs: docker (an engine to talk to) and, only when something must be built, debootstrap
# (Debian: apt-get install debootstrap) and root. The classic builder is enough.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
docker_dir=$(dirname "$here")
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
base=export-pipeline-stand-in/debian:bookworm
export DOCKER_BUILDKIT=0

say() { printf '==> stand-ins: %s\n' "$*"; }

# The names, read from the files that use them (a tag bump there is followed here).
python_image=$(sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' "$docker_dir/Dockerfile_user_code" | head -1)
compose_image() {
    sed -n "s|^[[:space:]]*image:[[:space:]]*\\(.*$1.*\\)|\\1|p" "$docker_dir/docker-compose.yml" | head -1
}
postgres_image=$(compose_image 'postgres:')
minio_image=$(compose_image 'minio/minio:')
mc_image=$(compose_image 'minio/mc:')
for name in "$python_image" "$postgres_image" "$minio_image" "$mc_image"; do
    [ -n "$name" ] || { echo "stand-ins: could not read an image name from $docker_dir" >&2; exit 1; }
done

present() { docker image inspect "$1" >/dev/null 2>&1; }

# 1 or 2: the real image (or one built before) is there; 3: it must be built.
needed() {
    if present "$1"; then
        say "$1: present"
        return 1
    fi
    if docker pull "$1" >/dev/null 2>&1; then
        say "$1: pulled"
        return 1
    fi
    say "$1: cannot be pulled; building a stand-in from Debian packages"
    return 0
}

debian_base() {
    present "$base" && return 0
    command -v debootstrap >/dev/null || {
        echo "stand-ins: debootstrap is needed to build $base (apt-get install debootstrap)" >&2
        exit 1
    }
    root=$(mktemp -d /tmp/stand-in-root.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    say "debootstrap bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >/tmp/stand-in-debootstrap.log 2>&1 || {
        tail -20 /tmp/stand-in-debootstrap.log >&2
        exit 1
    }
    # As Debian's own images: updates and security, no recommends, no caches kept.
    cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main
SOURCES
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$root/etc/apt/apt.conf.d/90stand-in"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' - "$base" >/dev/null
    rm -rf "$root"
    trap - EXIT
}

# docker build with a context of its own: the stand-in's files (and the CA bundle).
build() { # tag dockerfile [build-arg...]
    tag=$1 dockerfile=$2
    shift 2
    context=$(mktemp -d /tmp/stand-in-context.XXXXXX)
    cp "$here"/* "$context/"
    # pip inside the builds goes through this host's TLS set-up: its CA bundle (Debian's
    # standard one, as the host's pip uses) travels in the Python stand-in, outside
    # /etc/ssl/certs, which Debian's ca-certificates regenerates on install (PIP_CERT).
    cp "${STAND_IN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" "$context/host-ca.crt"
    say "building $tag"
    set -- --build-arg "BASE=$base" --build-arg "PYTHON_IMAGE=$python_image" "$@"
    docker build -q -f "$context/$dockerfile" -t "$tag" "$@" "$context" >/dev/null || {
        rm -rf "$context"
        exit 1
    }
    rm -rf "$context"
}

if needed "$python_image"; then
    debian_base
    build "$python_image" python.Dockerfile
fi
if needed "$postgres_image"; then
    debian_base
    build "$postgres_image" postgres.Dockerfile
fi
# One image serves both MinIO names: the S3 server (`minio server ...`) and the client the
# set-up script calls (`mc ...`).
if needed "$minio_image"; then
    build "$minio_image" s3.Dockerfile
fi
if needed "$mc_image"; then
    if [ "$(docker image inspect -f '{{index .Config.Labels "org.export-pipeline.stand-in"}}' "$minio_image" 2>/dev/null)" = s3 ]; then
        docker tag "$minio_image" "$mc_image"
    else
        build "$mc_image" s3.Dockerfile
    fi
fi
say "ready: $python_image, $postgres_image, $minio_image, $mc_image"
