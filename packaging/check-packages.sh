#!/usr/bin/env bash
# Builds the static Linux binaries (musl) when the target is installed, then the .deb
# (cargo-deb) and the .rpm (cargo-generate-rpm) from them: one binary that runs on every
# listed distribution, RHEL 8's glibc 2.28 included. The .deb is installed with dpkg -i,
# checked (files, account, conffile mode, validation, the agent starting as its account
# and stopping on SIGTERM) and purged; the .rpm is inspected (files, conffile, scriptlets,
# no glibc requirement). Both hold the agent alone: the reference cloud and the lab tools
# (fleet-cloud, fleet-lab) never reach an agent host. Run by .ci/run (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

musl=x86_64-unknown-linux-musl
target=()
if rustup target list --installed 2>/dev/null | grep "^$musl\$" >/dev/null; then
  cargo build --release -q --target "$musl" -p fleet-agent --bin fleet-agent
  bin="target/$musl/release/fleet-agent"
  echo "static binary: $bin, $(stat -c %s "$bin") bytes ($(du -h "$bin" | cut -f1))"
  file "$bin" | grep "static" >/dev/null || { file "$bin"; echo "not static"; exit 1; }
  "$bin" version
  "$bin" config validate config/fleet-agent.toml
  target=(--target "$musl")
else
  echo "the musl target is not installed: the packages carry the glibc build (needs the build host's glibc)"
fi

cargo deb "${target[@]}" --no-build --no-strip -q -o target/debian/
deb=$(ls -t target/debian/fleet-agent_*.deb | head -1)
echo "package: $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --field "$deb" Package Version Architecture Depends Installed-Size
dpkg-deb --contents "$deb" | awk '{print $1, $6}'

trap 'as_root dpkg --purge fleet-agent >/dev/null 2>&1 || true' EXIT
# A store the CLI created as root before the package was installed (a fresh host only):
# the package gives the state to the service account, so the service still starts.
if [ ! -e /var/lib/fleet-agent ]; then
  as_root install -d -m 0700 /var/lib/fleet-agent
  as_root touch /var/lib/fleet-agent/fleet-agent.db
fi
as_root dpkg -i "$deb"
[ "$(as_root stat -c %U /var/lib/fleet-agent/fleet-agent.db 2>/dev/null || echo fleet-agent)" = fleet-agent ] \
  || { echo "a store left by root before the install is not the service account's"; exit 1; }
test -x /usr/bin/fleet-agent
for tool in fleet-cloud fleet-lab; do
  if dpkg-deb --contents "$deb" | grep "$tool" >/dev/null; then echo "the .deb carries $tool"; exit 1; fi
  test ! -e "/usr/bin/$tool" || { echo "/usr/bin/$tool installed by the .deb"; exit 1; }
done
echo "the .deb installs the agent only (no fleet-cloud, no fleet-lab)"
unit=$(ls /lib/systemd/system/fleet-agent.service /usr/lib/systemd/system/fleet-agent.service 2>/dev/null | head -1)
test -n "$unit" && echo "unit: $unit"
getent passwd fleet-agent
perm=$(stat -c '%U:%G %a' /etc/fleet-agent/fleet-agent.toml)
[ "$perm" = "root:fleet-agent 640" ] || { echo "config owner/mode is $perm"; exit 1; }
dpkg-query -W -f='${Conffiles}\n' fleet-agent | grep /etc/fleet-agent/fleet-agent.toml >/dev/null
/usr/bin/fleet-agent config validate /etc/fleet-agent/fleet-agent.toml
if command -v systemd-analyze >/dev/null; then systemd-analyze verify "$unit"; fi

# The service account runs the agent on the packaged configuration (systemd may not run
# here, so the unit's command line is used directly).
log=$(mktemp)
set +e
# --foreground: timeout signals runuser only (which relays it once), not the whole group.
as_root timeout --foreground -s TERM 4 runuser -u fleet-agent -- /usr/bin/fleet-agent run \
    --config /etc/fleet-agent/fleet-agent.toml --state-dir /var/lib/fleet-agent 2>"$log"
set -e
grep -q "Agent running." "$log" || { cat "$log"; echo "the agent did not come up"; exit 1; }
grep -q "Agent stopped." "$log" || { cat "$log"; echo "the agent did not stop cleanly"; exit 1; }
as_root test -f /var/lib/fleet-agent/fleet-agent.db
echo "the agent came up as fleet-agent and stopped cleanly on SIGTERM"
# A store left owned by root (a command run with sudo) is refused with the fix, not
# opened read-only.
as_root chown root: /var/lib/fleet-agent/fleet-agent.db
set +e
as_root timeout --foreground -s TERM 4 runuser -u fleet-agent -- /usr/bin/fleet-agent run \
    --config /etc/fleet-agent/fleet-agent.toml --state-dir /var/lib/fleet-agent 2>"$log"
set -e
grep -q "chown -R fleet-agent: /var/lib/fleet-agent" "$log" \
  || { cat "$log"; echo "a root-owned store was not refused with its fix"; exit 1; }
echo "a root-owned store is refused, naming the fix"

as_root dpkg --purge fleet-agent
test ! -e /usr/bin/fleet-agent && test ! -e /var/lib/fleet-agent
trap - EXIT
echo "installed, checked and purged: $deb"

command -v cargo-generate-rpm >/dev/null 2>&1 || cargo install --locked -q cargo-generate-rpm@0.21.1
cargo generate-rpm "${target[@]}"
rpmfile=$(ls -t target/generate-rpm/fleet-agent-*.rpm 2>/dev/null | head -1 || true)
[ -z "$rpmfile" ] && rpmfile=$(ls -t target/"$musl"/generate-rpm/fleet-agent-*.rpm | head -1)
echo "package: $rpmfile ($(du -h "$rpmfile" | cut -f1))"
if command -v rpm >/dev/null 2>&1; then
  rpm -qlp "$rpmfile"
  if rpm -qlp "$rpmfile" | grep -Eq "fleet-(cloud|lab)"; then echo "the .rpm carries a lab tool"; exit 1; fi
  rpm -qp --configfiles "$rpmfile" | grep -x /etc/fleet-agent/fleet-agent.toml >/dev/null
  rpm -qp --scripts "$rpmfile" | grep "useradd -r -g fleet-agent" >/dev/null
  if [ ${#target[@]} -gt 0 ] && rpm -qp --requires "$rpmfile" | grep GLIBC >/dev/null; then
    echo "the .rpm should not need glibc"; exit 1
  fi
  echo "inspected: $rpmfile"
else
  echo "no rpm tool: the .rpm was built but not inspected"
fi
