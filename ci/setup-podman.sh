#!/usr/bin/env bash
# Configure podman for the CI machines and start its Docker-compatible API service.
# Run as root after `apt-get install podman runc docker-registry debootstrap`. Idempotent: safe to run
# again on a machine that already has the config and a running service.
#
# What these machines need (see DESIGN.md §5):
#   - runtime runc: crun refuses the hybrid cgroup v1/v2 layout;
#   - cgroup_manager cgroupfs and events_logger file: there is no systemd (nor journald);
#   - explicit default ulimits no higher than this shell's hard limits: podman would otherwise ask for
#     nofile/nproc = 1048576, which these machines refuse;
#   - registries: localhost/127.0.0.1 registries over plain http, and no unqualified-search registries
#     (no image hub is reachable, so a short name must never go looking for one).
#   - storage: overlay when the kernel does it on this filesystem, else fuse-overlayfs, else vfs.
# Then `podman system service --time=0 unix:///run/podman/podman.sock` in the background unless the
# socket already answers /_ping, and waits until it does.
set -euo pipefail

SOCKET_PATH="${DOCKYARD_PODMAN_SOCKET:-/run/podman/podman.sock}"
SERVICE_LOG="${DOCKYARD_PODMAN_LOG:-/var/log/dockyard-podman-service.log}"
PIDFILE="$(dirname "$SOCKET_PATH")/dockyard-podman-service.pid"
CONFIG_CHANGED=0
log() { echo "setup-podman: $*"; }

if [[ $(id -u) != 0 ]]; then
    echo "setup-podman: must run as root" >&2
    exit 1
fi
command -v podman >/dev/null || { echo "setup-podman: podman missing: apt-get install podman runc" >&2; exit 1; }
RUNC=$(command -v runc || true)
[[ -n $RUNC ]] || { echo "setup-podman: runc missing: apt-get install runc" >&2; exit 1; }

# Write $2 to $1 only when it differs, saying so.
write_file() {
    local path=$1 content=$2
    mkdir -p "$(dirname "$path")"
    if [[ -f $path ]] && printf '%s\n' "$content" | cmp -s - "$path"; then
        log "$path unchanged"
    else
        printf '%s\n' "$content" >"$path.tmp.$$"
        mv "$path.tmp.$$" "$path"
        log "wrote $path"
        CONFIG_CHANGED=1
    fi
}

# --- ulimits: soft = hard = this shell's hard limit (capped at podman's own default of 1048576).
cap() { local v=$1; if [[ $v == unlimited || $v -gt 1048576 ]]; then echo 1048576; else echo "$v"; fi; }
# podman lowers its own RLIMIT_NPROC to kernel.pid_max at start-up (seen with strace: it reads
# /proc/sys/kernel/pid_max, then setrlimit(RLIMIT_NPROC, 32768) here), and conmon/runc inherit that, so a
# container may not ask for more than that either.
PID_MAX=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
NOFILE=$(cap "$(ulimit -Hn)")
NPROC=$(cap "$(ulimit -Hu)")
(( NPROC > PID_MAX )) && NPROC=$PID_MAX
log "hard limits here: nofile=$(ulimit -Hn) nproc=$(ulimit -Hu), kernel.pid_max=$PID_MAX -> container defaults nofile=$NOFILE nproc=$NPROC"

# --- storage driver: keep whatever storage already holds; otherwise probe overlay, fuse-overlayfs, vfs.
GRAPHROOT=/var/lib/containers/storage
storage_driver() {
    local d
    for d in overlay vfs; do
        # Switching drivers would hide what is stored: keep the one already in use.
        if [[ -s $GRAPHROOT/$d-images/images.json ]] || [[ -s $GRAPHROOT/$d-containers/containers.json ]]; then
            echo "existing:$d"; return
        fi
    done
    local probe
    probe=$(mktemp -d /var/tmp/overlay-probe.XXXXXX)
    mkdir -p "$probe"/{lower,upper,work,merged}
    echo ok >"$probe/lower/f"
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"; rm -rf "$probe"; echo overlay; return
    fi
    rm -rf "$probe"
    if command -v fuse-overlayfs >/dev/null && [[ -e /dev/fuse ]]; then echo fuse-overlayfs; return; fi
    echo vfs
}
DRIVER=$(storage_driver)
case $DRIVER in
    existing:*) DRIVER=${DRIVER#existing:}; log "storage: keeping driver '$DRIVER' (already holds images or containers)";;
    *) log "storage: driver '$DRIVER' works here";;
esac
case $DRIVER in
    overlay) STORAGE_DRIVER=overlay; STORAGE_OPTS='';;
    fuse-overlayfs) STORAGE_DRIVER=overlay; STORAGE_OPTS="mount_program = \"$(command -v fuse-overlayfs)\"";;
    vfs) STORAGE_DRIVER=vfs; STORAGE_OPTS='';;
esac

write_file /etc/containers/storage.conf "# Written by dockyard ci/setup-podman.sh
[storage]
driver = \"$STORAGE_DRIVER\"
runroot = \"/run/containers/storage\"
graphroot = \"$GRAPHROOT\"

[storage.options.overlay]
$STORAGE_OPTS"

write_file /etc/containers/containers.conf "# Written by dockyard ci/setup-podman.sh: podman on machines without systemd, with a hybrid
# cgroup layout and hard ulimits of nofile=$(ulimit -Hn) nproc=$(ulimit -Hu) (podman: nproc <= pid_max=$PID_MAX).
[containers]
default_ulimits = [
  \"nofile=$NOFILE:$NOFILE\",
  \"nproc=$NPROC:$NPROC\",
]
log_driver = \"k8s-file\"

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
image_default_transport = \"docker://\"

[engine.runtimes]
runc = [\"$RUNC\"]"

# The Debian package ships an old libpod.conf naming crun and systemd; podman 4 ignores it when
# containers.conf exists, but move it out of the way so nobody is misled by it.
if [[ -f /etc/containers/libpod.conf ]]; then
    mv /etc/containers/libpod.conf /etc/containers/libpod.conf.dockyard-disabled
    log "moved the obsolete /etc/containers/libpod.conf aside"
fi

write_file /etc/containers/registries.conf.d/50-dockyard-ci.conf "# Written by dockyard ci/setup-podman.sh.
# No image hub is reachable from these machines: never expand short names against a search list.
unqualified-search-registries = []
short-name-mode = \"disabled\"

# Registries on the loopback address (any port) speak plain http. containers/image matches
# \"localhost\" against \"localhost:PORT\" as a prefix.
[[registry]]
location = \"localhost\"
insecure = true

[[registry]]
location = \"127.0.0.1\"
insecure = true"

# The Debian default registries.conf is all comments; make sure it has no search list of its own
# that a drop-in would have to fight.
if grep -qE '^[[:space:]]*unqualified-search-registries' /etc/containers/registries.conf 2>/dev/null; then
    sed -i -E 's/^([[:space:]]*unqualified-search-registries.*)$/# \1  (disabled by dockyard ci\/setup-podman.sh)/' \
        /etc/containers/registries.conf
    log "commented out unqualified-search-registries in /etc/containers/registries.conf"
fi

# --- the API service
ping() { curl -fsS --max-time 2 --unix-socket "$SOCKET_PATH" http://d/_ping 2>/dev/null; }
# A service this script started earlier read the old config: restart it when the config changed.
if [[ $CONFIG_CHANGED == 1 && -f $PIDFILE ]]; then
    old_pid=$(cat "$PIDFILE")
    if kill -0 "$old_pid" 2>/dev/null && grep -q 'system.*service' "/proc/$old_pid/cmdline" 2>/dev/null; then
        log "config changed: stopping the API service started earlier (pid $old_pid)"
        kill "$old_pid"
        for _ in $(seq 1 50); do kill -0 "$old_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE"
fi
if [[ "$(ping || true)" == OK ]]; then
    log "API service already answers on unix://$SOCKET_PATH"
    [[ $CONFIG_CHANGED == 1 ]] && log "warning: config changed but the running service was not started by this script; restart it to apply"
else
    mkdir -p "$(dirname "$SOCKET_PATH")"
    rm -f "$SOCKET_PATH"
    log "starting: podman system service --time=0 unix://$SOCKET_PATH (log: $SERVICE_LOG)"
    # setsid + nohup: the service outlives this script and the CI step that ran it. Started from / because
    # conmon leaves files (such as "oom") in its working directory, which must not be a checkout.
    pushd / >/dev/null
    setsid nohup podman system service --time=0 "unix://$SOCKET_PATH" >>"$SERVICE_LOG" 2>&1 </dev/null &
    pid=$!
    popd >/dev/null
    echo "$pid" >"$PIDFILE"
    for _ in $(seq 1 100); do
        [[ "$(ping || true)" == OK ]] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "setup-podman: podman system service exited:" >&2
            tail -n 30 "$SERVICE_LOG" >&2
            exit 1
        fi
        sleep 0.2
    done
    if [[ "$(ping || true)" != OK ]]; then
        echo "setup-podman: unix://$SOCKET_PATH did not answer /_ping within 20s" >&2
        tail -n 30 "$SERVICE_LOG" >&2
        exit 1
    fi
    log "API service (pid $pid) answers on unix://$SOCKET_PATH"
fi

podman info --format 'setup-podman: podman {{.Version.Version}}, runtime {{.Host.OCIRuntime.Name}}, cgroups {{.Host.CgroupManager}} {{.Host.CgroupsVersion}}, events {{.Host.EventLogger}}, storage {{.Store.GraphDriverName}}'
echo "setup-podman: export DOCKER_HOST=unix://$SOCKET_PATH"
