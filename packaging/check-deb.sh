#!/usr/bin/env bash
# Builds the .deb from the release binaries (cargo-deb), installs it with dpkg -i, checks
# what it put where, starts the agent as the service account on the packaged
# configuration, and purges the package again. Run by .ci/run (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

cargo deb --no-build --no-strip -q -o target/debian/
deb=$(ls -t target/debian/fleet-agent_*.deb | head -1)
echo "package: $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --field "$deb" Package Version Architecture Depends Installed-Size
dpkg-deb --contents "$deb" | awk '{print $1, $6}'

trap 'as_root dpkg --purge fleet-agent >/dev/null 2>&1 || true' EXIT
as_root dpkg -i "$deb"
test -x /usr/bin/fleet-agent && test -x /usr/bin/fleet-cloud
unit=$(ls /lib/systemd/system/fleet-agent.service /usr/lib/systemd/system/fleet-agent.service 2>/dev/null | head -1)
test -n "$unit" && echo "unit: $unit"
getent passwd fleet-agent
perm=$(stat -c '%U:%G %a' /etc/fleet-agent/fleet-agent.toml)
[ "$perm" = "root:fleet-agent 640" ] || { echo "config owner/mode is $perm"; exit 1; }
dpkg-query -W -f='${Conffiles}\n' fleet-agent | grep -q /etc/fleet-agent/fleet-agent.toml
/usr/bin/fleet-agent config validate /etc/fleet-agent/fleet-agent.toml
if command -v systemd-analyze >/dev/null; then systemd-analyze verify "$unit"; fi

# The service account runs the agent on the packaged configuration (systemd may not run
# here, so the unit's command line is used directly).
log=$(mktemp)
set +e
as_root timeout -s TERM 4 runuser -u fleet-agent -- /usr/bin/fleet-agent run \
    --config /etc/fleet-agent/fleet-agent.toml --state-dir /var/lib/fleet-agent 2>"$log"
set -e
grep -q "Agent running." "$log" || { cat "$log"; echo "the agent did not come up"; exit 1; }
grep -q "Agent stopped." "$log" || { cat "$log"; echo "the agent did not stop cleanly"; exit 1; }
as_root test -f /var/lib/fleet-agent/fleet-agent.db
echo "the agent came up as fleet-agent and stopped cleanly on SIGTERM"

as_root dpkg --purge fleet-agent
test ! -e /usr/bin/fleet-agent && test ! -e /var/lib/fleet-agent
trap - EXIT
echo "installed, checked and purged: $deb"
