#!/usr/bin/env bash
# Start Debian's dockerd (docker.io, 20.10) beside podman, for the engine tests that also run against docker.
# Run as root; installs docker.io when dockerd is missing. Idempotent: a daemon that already answers on the
# socket is left as it is.
#
# What these machines need:
#   - no systemd: dockerd is started here, detached, and starts its own containerd;
#   - runc from Debian (podman uses the same binary), cgroupfs (there is no systemd to manage cgroups);
#   - registries on the loopback address speak plain http: dockerd allows that for 127.0.0.0/8 by default,
#     and "localhost:PORT" is added as well;
#   - no image hub is reachable, so images come from the tests' own registries, or are copied from podman's
#     storage with `podman save | docker load` (DOCKYARD_DOCKER_LOAD="ref ref …", e.g. the CI base image).
set -euo pipefail

SOCKET_PATH="${DOCKYARD_DOCKER_SOCKET:-/var/run/docker.sock}"
SERVICE_LOG="${DOCKYARD_DOCKER_LOG:-/var/log/dockyard-dockerd.log}"
PIDFILE="${DOCKYARD_DOCKER_PIDFILE:-/var/run/dockyard-dockerd.pid}"
log() { echo "setup-docker: $*"; }

if [[ $(id -u) != 0 ]]; then
    echo "setup-docker: must run as root" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null; then
    log "installing docker.io"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
RUNC=$(command -v runc || true)
[[ -n $RUNC ]] || { echo "setup-docker: runc missing: apt-get install runc" >&2; exit 1; }

mkdir -p /etc/docker
CONFIG='{
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "default-runtime": "dockyard-runc",
  "runtimes": {"dockyard-runc": {"path": "'"$RUNC"'"}},
  "insecure-registries": ["127.0.0.0/8", "localhost"],
  "log-driver": "json-file",
  "storage-driver": "overlay2"
}'
if [[ ! -f /etc/docker/daemon.json ]] || ! printf '%s\n' "$CONFIG" | cmp -s - /etc/docker/daemon.json; then
    printf '%s\n' "$CONFIG" >/etc/docker/daemon.json
    log "wrote /etc/docker/daemon.json"
fi

ping() { curl -fsS --max-time 2 --unix-socket "$SOCKET_PATH" http://d/_ping 2>/dev/null; }
if [[ "$(ping || true)" == OK ]]; then
    log "dockerd already answers on unix://$SOCKET_PATH"
else
    rm -f "$SOCKET_PATH"
    log "starting: dockerd --host unix://$SOCKET_PATH (log: $SERVICE_LOG)"
    pushd / >/dev/null
    setsid nohup dockerd --host "unix://$SOCKET_PATH" --pidfile "$PIDFILE" >>"$SERVICE_LOG" 2>&1 </dev/null &
    pid=$!
    popd >/dev/null
    for _ in $(seq 1 150); do
        [[ "$(ping || true)" == OK ]] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "setup-docker: dockerd exited:" >&2
            tail -n 30 "$SERVICE_LOG" >&2
            exit 1
        fi
        sleep 0.2
    done
    if [[ "$(ping || true)" != OK ]]; then
        echo "setup-docker: unix://$SOCKET_PATH did not answer /_ping within 30s" >&2
        tail -n 30 "$SERVICE_LOG" >&2
        exit 1
    fi
    log "dockerd (pid $pid) answers on unix://$SOCKET_PATH"
fi

# Images from podman's storage, for tests that run an image no registry holds.
for ref in ${DOCKYARD_DOCKER_LOAD:-}; do
    if DOCKER_HOST="unix://$SOCKET_PATH" docker image inspect "$ref" >/dev/null 2>&1; then
        log "$ref already loaded"
    else
        log "loading $ref from podman's storage"
        podman save "$ref" | DOCKER_HOST="unix://$SOCKET_PATH" docker load -q
    fi
done

DOCKER_HOST="unix://$SOCKET_PATH" docker version --format \
    'setup-docker: docker {{.Server.Version}}, {{range .Server.Components}}{{.Name}} {{.Version}}; {{end}}'
echo "setup-docker: export DOCKER_HOST=unix://$SOCKET_PATH"
