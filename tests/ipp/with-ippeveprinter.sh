#!/bin/bash
# Runs CUPS's ippeveprinter (an independent IPP Everywhere implementation) in a network
# namespace of its own, then runs the given command there with IPP_URI set to it.
# ippeveprinter needs DNS-SD, so the namespace gets its own system D-Bus and Avahi, with
# a private /run (unshare -m) so the host's are untouched.
# Usage (root): with-ippeveprinter.sh COMMAND [ARGS...]
# Needs: iproute2, cups-ipp-utils (ippeveprinter, ipptool), avahi-daemon, dbus.
set -euo pipefail
trap 'echo "with-ippeveprinter.sh: line $LINENO failed (exit $?)" >&2' ERR
if [ -z "${FLEET_IPP_INSIDE:-}" ]; then
  ns="fa-ipp-$$"
  ip netns add "$ns"
  cleanup() {
    # Whatever still runs in the namespace: TERM, a moment, then KILL; then the namespace.
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      kill $pids 2>/dev/null || true
      for _ in $(seq 20); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] && break
        sleep 0.1
      done
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  }
  trap cleanup EXIT
  rc=0
  FLEET_IPP_INSIDE=1 ip netns exec "$ns" unshare -m "$0" "$@" || rc=$?
  exit "$rc"
fi
work=$(mktemp -d)
finish() {
  kill $(jobs -p) 2>/dev/null || true
  [ -f "$work/dbus.pid" ] && kill "$(cat "$work/dbus.pid")" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap finish EXIT
mount --make-rprivate / 2>/dev/null || true
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/avahi-daemon
ip link set lo up
# Avahi wants a multicast interface besides loopback: a veth pair inside the namespace.
ip link add fa-v0 type veth peer name fa-v1
ip addr add 10.231.0.1/24 dev fa-v0
ip link set fa-v1 up
ip link set fa-v0 up
dbus-daemon --system --fork --print-pid > "$work/dbus.pid"
cat > "$work/avahi.conf" <<EOC
[server]
use-ipv6=no
allow-interfaces=fa-v0
[publish]
publish-workstation=no
EOC
avahi-daemon --no-drop-root --no-chroot -f "$work/avahi.conf" > "$work/avahi.log" 2>&1 &
for _ in $(seq 50); do avahi-daemon -c 2>/dev/null && break; sleep 0.1; done
avahi-daemon -c || { echo "avahi-daemon did not start:" >&2; cat "$work/avahi.log" >&2; exit 1; }
mkdir -p "$work/spool"
port=${IPP_PORT:-8631}
ippeveprinter -p "$port" -d "$work/spool" -M Acme -m "Laser 9000" -l "Floor 2" \
  "Fleet Test Printer" > "$work/ippeveprinter.log" 2>&1 &
export IPP_URI="ipp://localhost:$port/ipp/print" IPP_PORT="$port" IPP_LOG="$work/ippeveprinter.log"
for _ in $(seq 100); do
  ipptool -q "$IPP_URI" get-printer-attributes.test 2>/dev/null && break
  sleep 0.1
done
ipptool -q "$IPP_URI" get-printer-attributes.test || { cat "$work/ippeveprinter.log" >&2; exit 1; }
"$@"
