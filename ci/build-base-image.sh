#!/usr/bin/env bash
# Build the Debian bookworm + Python 3 base image the test fixtures use, without any image hub:
# debootstrap a minbase root filesystem from the machine's own Debian mirror and `podman import` it as
#   localhost/dockyard-ci/debian-python:bookworm
# Skips all work when that image already exists (CI reuses it between runs on the same machine).
# Run as root. Override the image name with DOCKYARD_BASE_IMAGE, the mirror with DEBIAN_MIRROR,
# and force a rebuild with --force.
set -euo pipefail

IMAGE="${DOCKYARD_BASE_IMAGE:-localhost/dockyard-ci/debian-python:bookworm}"
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,passwd
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { echo "build-base-image: $*"; }

if [[ $FORCE == 0 ]] && podman image exists "$IMAGE"; then
    log "$IMAGE already exists; nothing to do ($(podman image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12))"
    exit 0
fi

# The Debian mirror this machine's apt already uses (never a hard-coded host): the first `URIs:` of a
# deb822 source whose suites include $SUITE, else the first `deb URI $SUITE ...` line of a one-line source.
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        uri=$(awk -v suite="$SUITE" '
            function flush() { if (!found && uris != "" && suites ~ ("(^| )" suite "( |$)") && types ~ /(^| )deb( |$)/) { split(uris, u, " "); print u[1]; found = 1; exit } uris=""; suites=""; types="" }
            /^[[:space:]]*$/ { flush(); next }
            /^URIs:/   { sub(/^URIs:[[:space:]]*/, ""); uris=$0 }
            /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites=$0 }
            /^Types:/  { sub(/^Types:[[:space:]]*/, ""); types=$0 }
            END { flush() }' "$f")
        [[ -n $uri ]] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        uri=$(awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == suite) { print $i; exit } }' "$f")
        [[ -n $uri ]] && { echo "$uri"; return; }
    done
}

MIRROR="${DEBIAN_MIRROR:-$(debian_mirror)}"
if [[ -z $MIRROR ]]; then
    echo "build-base-image: no Debian mirror for $SUITE found in /etc/apt/sources.list{,.d/*}; set DEBIAN_MIRROR" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "build-base-image: debootstrap missing: apt-get install debootstrap" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/dockyard-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
START=$(date +%s)

# Two tries: a mirror hiccup should not cost a CI run.
for attempt in 1 2; do
    log "debootstrap --variant=minbase $SUITE from $MIRROR (packages: $PACKAGES), try $attempt"
    rm -rf "$ROOTFS"
    if debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        break
    fi
    tail -n 40 "$WORK/debootstrap.log" >&2
    [[ -f $ROOTFS/debootstrap/debootstrap.log ]] && tail -n 40 "$ROOTFS/debootstrap/debootstrap.log" >&2
    if [[ $attempt == 2 ]]; then
        echo "build-base-image: debootstrap failed twice" >&2
        exit 1
    fi
    sleep 5
done
log "debootstrap done in $(( $(date +%s) - START ))s"

# Slim it down: no apt caches or lists, no docs/man pages, no logs.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/var/cache/apt/archives/partial/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/tmp/* \
       "$ROOTFS"/debootstrap
find "$ROOTFS" -name '__pycache__' -type d -prune -exec rm -rf {} +
PYVER=$(chroot "$ROOTFS" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')

log "importing as $IMAGE (python $PYVER)"
tar --numeric-owner -C "$ROOTFS" -cf - . | podman import \
    --change 'CMD ["python3"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change "LABEL org.opencontainers.image.title=dockyard-ci-debian-python" \
    --change "LABEL org.opencontainers.image.description=Debian $SUITE minbase with Python $PYVER, built by debootstrap" \
    --change "LABEL io.dockyard.ci.python-version=$PYVER" \
    --message "debootstrap --variant=minbase $SUITE + $PACKAGES" \
    --quiet - "$IMAGE" >/dev/null
log "built $IMAGE in $(( $(date +%s) - START ))s; size $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
