#!/usr/bin/env bash
# The Windows build run under Wine (the closest thing to Windows that CI has), with a
# fresh prefix, against printers simulated on the Linux side on 127.0.0.1. Run by
# .ci/run after packaging/windows/build-msi.sh; prints each check as it passes.
#
#  1. fleet-agent.exe: version, config validate (a good file, and a bad one with its
#     key path and exit 64), poll of a simulated printer, run in the foreground with
#     /metrics answering and both printers polled.
#  2. The MSI: msiexec /i /qn PORT=...; the files, the configuration and the service's
#     registration (automatic, LocalSystem, its command line with the port and the state
#     directory); the service started by the installer answering on that port; the
#     desktop and Start menu shortcuts, `page open` finding the page on the fallback port,
#     and the shortcut opening it in "the browser" (a script Wine hands links to).
#  3. msiexec /x: executable and service gone, configuration and state kept (as the
#     README documents).
#  4. A silent install with CLOUDURL and ACTIVATIONCODE over the kept configuration: the
#     service activated by the installer polls the simulator and reports to the
#     reference cloud.
#  5. An `updateAgent` job: the signed new version is staged, run by the service as its
#     child, confirmed healthy and reported; then the service stopped through the
#     service manager (net stop): the child is asked to stop and the log shows the
#     agent's ordered stop.
#  6. An upgrade (this build as 0.1.1) given no properties: the service keeps the port,
#     fallbacks and cloud URL the installed version had. Then the uninstall again.
#  7. The installer's interface, on a virtual screen (Xvfb) driven by keys (xdotool): the
#     licence accepted, a port typed, Install, then Finish with "Open Fleet Agent in the
#     browser" ticked: the page's address reaches the browser.
#
# Where Wine differs from Windows (README "Windows under Wine"): Wine 8 has no
# bcryptprimitives.dll (a stand-in built from tests/wine/bcryptprimitives.c goes into the
# prefix, never into the package); its service manager refuses recovery actions; its
# icacls is a stub that changes nothing and Wine keeps no ACLs, so the ACL the agent asks
# for is recorded by a stand-in (tests/wine/icacls-recorder.c) and checked, not read
# back; %ProgramData% of its services is C:\users\Public; its msiexec logs hidden
# properties; a new prefix says Windows 7.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
exe="$ROOT/target/x86_64-pc-windows-gnu/release/fleet-agent.exe"
lab="${FLEET_LAB:-$ROOT/target/release/fleet-lab}"
cloud="${FLEET_CLOUD:-$ROOT/target/release/fleet-cloud}"
msi=$(ls "$ROOT"/target/windows/fleet-agent-*-x64.msi 2>/dev/null | head -1 || true)
for need in wine wineserver x86_64-w64-mingw32-gcc curl; do
  command -v "$need" >/dev/null || { echo "skipped: $need is not installed"; exit 0; }
done
[ -f "$exe" ] && [ -n "$msi" ] && [ -x "$lab" ] && [ -x "$cloud" ] || {
  echo "skipped: build the Windows executable and MSI (packaging/windows/build-msi.sh), fleet-lab and fleet-cloud first"
  exit 0
}

work=$(mktemp -d)
# winemenubuilder off and a HOME of its own: Wine links the prefix's Desktop to $HOME and
# mirrors shortcuts into ~/.local/share/applications; the MSI's shortcuts stay in $work.
# icacls.exe native: the recorder built below, for every process (the services too).
mkdir -p "$work/home"
export HOME="$work/home" WINEPREFIX="$work/prefix" WINEARCH=win64 WINEDEBUG=-all \
  WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d;icacls.exe=n"
sim_pid=""
run_pid=""
cloud_pid=""
taker_pid=""
xvfb_pid=""
cleanup() {
  [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null || true
  [ -n "$taker_pid" ] && kill "$taker_pid" 2>/dev/null || true
  [ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null || true
  [ -n "$cloud_pid" ] && kill "$cloud_pid" 2>/dev/null || true
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  wineserver -k 2>/dev/null || true
  if [ -n "${FLEET_WINE_KEEP:-}" ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() {
  echo "FAILED: $*"
  exit 1
}
ok() { echo "  ok: $*"; }
# Wine's console output has CRLF line ends. The output is what is checked, not the status.
w() { wine "$@" 2>&1 | tr -d '\r' || true; }
# Waits up to $2 seconds for $1 (a shell condition).
wait_for() {
  local t=0
  until eval "$1"; do
    t=$((t + 1))
    [ "$t" -le "$(($2 * 5))" ] || return 1
    sleep 0.2
  done
}
metric() { curl -s -m 3 "http://127.0.0.1:$1/metrics" | tr -d '\r' | awk -v m="$2" '$1 == m { print $2 }'; }

# A virtual screen for the installer's dialogs (step 7), there from the start: Wine's
# session takes its display driver when it begins.
for need in Xvfb xdotool; do
  command -v "$need" >/dev/null || fail "$need is needed for the installer's dialogs (.ci/run installs it)"
done
# Xvfb picks a free display number and writes it to descriptor 3.
Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp 3>"$work/display" >"$work/xvfb.log" 2>&1 &
xvfb_pid=$!
wait_for '[ -s "$work/display" ]' 20 || fail "Xvfb did not start: $(cat "$work/xvfb.log")"
export DISPLAY=":$(head -1 "$work/display")"
# Links go to the browser Wine is told of below, never to one named by the environment.
unset BROWSER

echo "Wine: $(wine --version); prefix $WINEPREFIX"
wineboot -i >/dev/null 2>&1
# A new prefix says Windows 7, which the MSI's launch condition refuses (it needs 10).
wine winecfg -v win10 >/dev/null 2>&1
wineserver -w
# Services live in wineserver's session: keep one session up for everything below (it
# would end a few seconds after each command, and the service with it). Made persistent
# only once the prefix exists: during its creation a second services.exe would start,
# and services created in one would be unknown to the other (error 1060).
wineserver -p >/dev/null 2>&1
wineboot >/dev/null 2>&1
sys32="$WINEPREFIX/drive_c/windows/system32"
x86_64-w64-mingw32-gcc -O2 -shared -o "$sys32/bcryptprimitives.dll" tests/wine/bcryptprimitives.c -ladvapi32
ok "stand-in bcryptprimitives.dll built into the prefix (test tooling, not packaged)"
# Wine keeps no ACLs and its icacls is a stub: a recorder in its place writes down what the
# agent asks for (C:\icacls.log), checked after the install.
x86_64-w64-mingw32-gcc -O2 -o "$sys32/icacls.exe" tests/wine/icacls-recorder.c
acl_log="$WINEPREFIX/drive_c/icacls.log"
ok "icacls recorder built into the prefix (test tooling, not packaged)"
# "The browser": Wine hands http links (ShellExecute) to the first program of this list,
# here one that writes down what it was asked to open.
cat >"$work/browser" <<'B'
#!/bin/sh
echo "$@" >>"$(dirname "$0")/browser.log"
B
chmod +x "$work/browser"
wine reg add 'HKCU\Software\Wine\WineBrowser' /v Browsers /d "$work/browser" /f >/dev/null 2>&1
opened() { tr -d '\r' <"$work/browser.log" 2>/dev/null | tail -1; }

# Two printers simulated on the Linux side.
port=$((20000 + $$ % 20000))
"$lab" simulate --synthetic 2 --fleet-start 127.0.0.1 --port "$port" >"$work/sim.log" 2>&1 &
sim_pid=$!
wait_for 'grep -q listening "$work/sim.log"' 20 || fail "the simulator did not start: $(cat "$work/sim.log")"

echo "1. fleet-agent.exe under Wine"
out=$(w "$exe" version)
[[ "$out" == "fleet-agent "* ]] || fail "version: $out"
ok "version: $out"

web1=$((port + 1))
conf="$work/agent.toml"
cat >"$conf" <<EOF
[agent]
state_dir = 'C:\\fa-run\\state'
[web]
listen = "127.0.0.1:$web1"
[poller]
interval_secs = 10
[[printers]]
address = "127.0.0.1:$port"
[[printers]]
address = "127.0.0.2:$port"
EOF
wconf=$(winepath -w "$conf" 2>/dev/null | tr -d '\r')
out=$(w "$exe" config validate "$wconf")
[[ "$out" == *"valid (1 SNMP profile(s), 2 printer(s)"* ]] || fail "config validate: $out"
ok "config validate: $out"
printf '[poller]\ninterval_secs = "often"\n' >"$work/bad.toml"
set +e
out=$(wine "$exe" config validate "$(winepath -w "$work/bad.toml" | tr -d '\r')" 2>&1)
rc=$?
set -e
out=$(tr -d '\r' <<<"$out")
[ "$rc" = 64 ] && [[ "$out" == *"poller.interval_secs"* ]] || fail "a bad configuration: exit $rc, $out"
ok "a bad configuration exits 64 naming poller.interval_secs"

out=$(w "$exe" poll "127.0.0.1:$port")
[[ "$out" == *"Serial       FAMLX0000001"* ]] || fail "poll: $out"
# The vendor step too (a second walk once the sysObjectID is known): the Lexmark-like
# simulated printer's supply chip serials.
grep -q "chip serial CHIP" <<<"$out" || fail "poll: no supply chip serials (the vendor step): $out"
ok "poll 127.0.0.1:$port: $(grep -c . <<<"$out") lines, serial FAMLX0000001, $(grep -c 'chip serial' <<<"$out") supplies with chip serials"

wine "$exe" run --config "$wconf" >"$work/run.log" 2>&1 &
run_pid=$!
wait_for '[ "$(metric '"$web1"' fleet_agent_polls_total)" -ge 2 ] 2>/dev/null' 60 \
  || fail "run: no polls on /metrics; log: $(tail -5 "$work/run.log")"
ok "run (foreground): /metrics on 127.0.0.1:$web1 answers, $(metric "$web1" fleet_agent_polls_total) polls, $(metric "$web1" 'fleet_agent_printers{health="ok"}') printers OK"
# No Ctrl-C can be sent to a Wine console program from here: the ordered stop is checked
# on the service below.
kill "$run_pid" 2>/dev/null || true
wait "$run_pid" 2>/dev/null || true
run_pid=""

echo "2. the MSI"
web2=$((port + 2))
# PORT taken by another program: the service skips the fallbacks that are taken too and
# moves to the first free one.
fallback=$((port + 4))
python3 -c 'import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("taken", flush=True); time.sleep(600)' "$web2" >"$work/taken.log" 2>&1 &
taker_pid=$!
wait_for 'grep -q taken "$work/taken.log"' 10 || fail "could not occupy port $web2"
set +e
wine msiexec /i "$(winepath -w "$msi" | tr -d '\r')" /qn PORT="$web2" PORTFALLBACK="$web2,$fallback" >"$work/msi.log" 2>&1
rc=$?
set -e
[ "$rc" = 0 ] || fail "msiexec /i exited $rc: $(tr -d '\r' <"$work/msi.log" | tail -5)"
ok "msiexec /i $(basename "$msi") /qn PORT=$web2 PORTFALLBACK=$web2,$fallback"
installed="$WINEPREFIX/drive_c/Program Files/Fleet Agent/fleet-agent.exe"
cmp -s "$installed" "$exe" || fail "the installed executable is not the build's"
data=$(ls -d "$WINEPREFIX"/drive_c/ProgramData/FleetAgent 2>/dev/null || true)
[ -n "$data" ] && cmp -s "$data/fleet-agent.toml" config/fleet-agent.toml \
  || fail "the default configuration is not under ProgramData\\FleetAgent"
ok "files: C:\\Program Files\\Fleet Agent\\fleet-agent.exe, C:\\ProgramData\\FleetAgent\\fleet-agent.toml (the default configuration)"
key='HKLM\System\CurrentControlSet\Services\FleetAgent'
reg=$(w reg query "$key")
grep -q 'ImagePath.*Fleet Agent\\fleet-agent.exe.*service run --config.*FleetAgent\\fleet-agent.toml.*--state-dir.*FleetAgent.*--web-port '"$web2"' --web-port-fallback "'"$web2,$fallback"'" --cloud-url ""' <<<"$reg" \
  || fail "the service's command line: $reg"
grep -Eq 'Start[[:space:]]+REG_DWORD[[:space:]]+0x2' <<<"$reg" || fail "the service does not start automatically: $reg"
grep -Eqi 'ObjectName[[:space:]]+REG_SZ[[:space:]]+LocalSystem' <<<"$reg" || fail "the service's account: $reg"
ok "service FleetAgent registered: automatic, LocalSystem, $(grep -o 'service run.*' <<<"$reg")"
wait_for '[ -n "$(metric '"$fallback"' fleet_agent_polls_total)" ]' 60 \
  || fail "the service started by the installer does not answer on port $fallback (PORT $web2 taken)"
ok "the installer started the service: PORT $web2 is taken by another program, so the page answers on $fallback, the first free PORTFALLBACK port"
# The state directory is the one the installer names on the service's command line.
log="$data/logs/fleet-agent.log"
wait_for '[ -f "$log" ] && [ -f "$data/fleet-agent.db" ]' 20 || fail "no log or store under C:\\ProgramData\\FleetAgent: $(ls "$data")"
ok "state and log in C:\\ProgramData\\FleetAgent (the installer's --state-dir)"
# The ACL the service asked for: inherited entries dropped; SYSTEM, Administrators and
# OWNER RIGHTS by their SIDs (never names, which Windows translates); inherited by what
# the directory will hold; the key file restricted too.
grants() { echo "/inheritance:r /grant:r *S-1-5-18:$1 /grant:r *S-1-5-32-544:$1 /grant:r *S-1-3-4:$1"; }
tr -d '\r' <"$acl_log" | grep -qF 'C:\ProgramData\FleetAgent '"$(grants '(OI)(CI)F')" \
  || fail "the state directory's ACL was not asked for: $(tr -d '\r' <"$acl_log" | tail -3)"
tr -d '\r' <"$acl_log" | grep -qF 'C:\ProgramData\FleetAgent\secret.key '"$(grants F)" \
  || fail "secret.key's ACL was not asked for: $(tr -d '\r' <"$acl_log" | tail -3)"
ok "ACL asked for (icacls recorder, $(wc -l <"$acl_log") calls): C:\\ProgramData\\FleetAgent $(grants '(OI)(CI)F'); secret.key the same without inheritance"
grep -q "Local page: port $web2 is taken; the page is on port $fallback" "$log" || fail "the log does not say where the page moved: $(grep -i 'page' "$log" | tail -3)"
ok "the log says: $(grep -o "Local page: port $web2 is taken; the page is on port $fallback" "$log" | head -1)"
# The shortcuts (the seed's "raccourci Fleet Agent"): `page open` with the service's ports.
# Wine puts an all-users install's shortcuts in the user's folders.
users="$WINEPREFIX/drive_c/users/$(id -un)"
desk="$users/Desktop/Fleet Agent.lnk"
menu="$users/AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Fleet Agent.lnk"
for lnk in "$desk" "$menu"; do
  [ -f "$lnk" ] && python3 -c 'import sys; sys.exit(sys.argv[2].encode("utf-16-le") not in open(sys.argv[1], "rb").read())' \
    "$lnk" "page open --web-port $web2 --web-port-fallback \"$web2,$fallback\"" \
    || fail "no shortcut $lnk running page open with the service's ports: $(ls "$(dirname "$lnk")")"
done
ok "shortcuts \"Fleet Agent\" on the desktop and in the Start menu: fleet-agent.exe page open --web-port $web2 --web-port-fallback \"$web2,$fallback\""
# The port the installer chose answers (another program holds it, and never replies): the
# page is found on the fallback.
out=$(w "$installed" page open --no-browser --wait-secs 5 --web-port "$web2" --web-port-fallback "$web2,$fallback")
grep -q "^Fleet Agent .*: http://localhost:$fallback/" <<<"$out" || fail "page open: $out"
ok "page open --no-browser: $(grep '^Fleet Agent' <<<"$out")"
# The desktop shortcut, opened as from Explorer: the browser gets the page's address.
w start /wait /unix "$desk" >/dev/null
wait_for '[ "$(opened)" = "http://localhost:$fallback/" ]' 20 || fail "the shortcut did not open the page: $(opened)"
ok "the desktop shortcut opened $(opened) in the browser (ShellExecute)"
kill "$taker_pid" 2>/dev/null || true

echo "3. uninstall"
# Stops the service and waits for its process to be gone. Wine's msiexec removes the
# files without waiting for the service it stops to exit (its StopServices ends at once),
# so an uninstall of a running service finds fleet-agent.exe in use now and then, and
# leaves it behind; Windows waits (ServiceControl Wait="yes", up to 30 s).
stop_service() {
  w net stop FleetAgent >/dev/null
  wait_for '! pgrep -f "Fleet Agent.fleet-agent.exe" >/dev/null' 60 || fail "the service's process did not exit after net stop"
}
# Uninstalls the product of package $1 (default: the build's MSI), the service stopped
# first (see stop_service: Wine's msiexec would race the service's exit).
uninstall() {
  stop_service
  set +e
  wine msiexec /x "$(winepath -w "${1:-$msi}" | tr -d '\r')" /qn >"$work/msix.log" 2>&1
  rc=$?
  set -e
  [ "$rc" = 0 ] || fail "msiexec /x exited $rc"
  [ ! -e "$installed" ] || fail "the executable is still there after uninstall"
  set +e
  wine reg query "$key" >/dev/null 2>&1
  gone=$?
  set -e
  [ "$gone" != 0 ] || fail "the service is still registered after uninstall"
  [ ! -e "$desk" ] && [ ! -e "$menu" ] || fail "the shortcuts are still there after uninstall"
  [ -f "$data/fleet-agent.toml" ] || fail "the configuration was removed"
  [ -f "$log" ] && [ -f "$data/fleet-agent.db" ] || fail "the state (store, log) was removed"
}
uninstall
ok "msiexec /x: executable and service removed; configuration and state kept"

echo "4. a silent install for automation: CLOUDURL and ACTIVATIONCODE against the reference cloud"
cport=$((port + 3))
export FLEET_CLOUD_ADMIN_TOKEN="wine-admin-$$"
"$cloud" serve --listen "127.0.0.1:$cport" --ca-out "$work/cloud-ca.pem" >"$work/cloud.log" 2>&1 &
cloud_pid=$!
wait_for 'grep -q listening "$work/cloud.log"' 20 || fail "the reference cloud did not start: $(cat "$work/cloud.log")"
curl_cloud=(--url "https://127.0.0.1:$cport" --ca "$work/cloud-ca.pem")
created=$("$cloud" create-agent "${curl_cloud[@]}" --name "wine")
agent_id=$(awk '{ print $2 }' <<<"$created")
code=$(awk '{ print $5 }' <<<"$created")
public=$("$cloud" library-key --out "$work/update-key" | grep -Eo '[A-Za-z0-9+/]{43}=' | head -1)
[ -n "$agent_id" ] && [ -n "$code" ] && [ -n "$public" ] || fail "cloud set-up: $created / key $public"
# The configuration the uninstall kept, edited as an admin would: the two simulated
# printers polled every 10 s (the first poll of each falls at random within the
# interval), the reference cloud's CA, the update key. No cloud.url: CLOUDURL gives it.
wca=$(winepath -w "$work/cloud-ca.pem" | tr -d '\r')
wca=${wca//\\/\\\\} # sed reads backslashes in its replacement
sed -i -e 's/^interval_secs = 300$/interval_secs = 10/' -e 's/^deadline_secs = 60$/deadline_secs = 5/' \
  -e 's|^ca_file = ""|ca_file = '"'$wca'"'|' \
  -e 's|^update_keys = \[\]|update_keys = ["'"$public"'"]|' "$data/fleet-agent.toml"
printf '\n[[printers]]\naddress = "127.0.0.1:%s"\n[[printers]]\naddress = "127.0.0.2:%s"\n' "$port" "$port" >>"$data/fleet-agent.toml"
grep -q '^url = ""' "$data/fleet-agent.toml" || fail "the kept configuration names a cloud URL"
set +e
wine msiexec /i "$(winepath -w "$msi" | tr -d '\r')" /qn /l*v "$(winepath -w "$work/msi2.log" | tr -d '\r')" \
  PORT="$web2" PORTFALLBACK=none CLOUDURL="https://127.0.0.1:$cport" ACTIVATIONCODE="$code" >/dev/null 2>&1
rc=$?
set -e
[ "$rc" = 0 ] || fail "msiexec /i with CLOUDURL and ACTIVATIONCODE exited $rc: $(iconv -f utf-16 -t utf-8 "$work/msi2.log" 2>/dev/null | tail -5)"
reg=$(w reg query "$key")
grep -q -- "--cloud-url \"https://127.0.0.1:$cport\"" <<<"$reg" || fail "the service's command line: $reg"
ok "msiexec /i /qn PORT=$web2 PORTFALLBACK=none CLOUDURL=https://127.0.0.1:$cport ACTIVATIONCODE=…: the service runs with --cloud-url"
wait_for '[ "$(metric '"$web2"' fleet_agent_polls_total)" -ge 2 ] 2>/dev/null' 60 \
  || fail "the service does not poll the simulator; its log: $(tail -5 "$log" 2>/dev/null)"
ok "the service polled $(metric "$web2" 'fleet_agent_printers{health="ok"}') printers OK on the simulator"
wait_for '"$cloud" assets "${curl_cloud[@]}" 2>/dev/null | grep -q FAMLX0000001' 60 \
  || fail "the printers did not reach the cloud (activation during the install?); the log: $(tail -5 "$log")"
# The sealing key, written by the service at its first start, is bound to this machine.
[ "$(head -c 21 "$data/secret.key")" = "fleet-agent dpapi v1" ] && [ "$(stat -c %s "$data/secret.key")" -gt 32 ] \
  || fail "secret.key is not wrapped with DPAPI: $(head -c 21 "$data/secret.key" | od -c | head -2)"
ok "secret.key wrapped with DPAPI (machine scope), $(stat -c %s "$data/secret.key") bytes; the service and the installer's activation open it"
ok "activated during the install as $agent_id: the cloud has $("$cloud" assets "${curl_cloud[@]}" | grep -o '"serialNumber": *"FAM[^"]*"' | sort -u | wc -l) printer(s) from it"
# Windows leaves ACTIVATIONCODE out of the verbose log (MsiHiddenProperties, checked in
# the package by build-msi.sh); Wine's msiexec ignores that property and logs it.

echo "5. the service updates itself (updateAgent) and stops through the service manager"
# A "new version": this build's executable signed as 99.0.0 for Windows.
cp "$exe" "$work/fleet-agent-next.exe"
"$cloud" update-sign --key "$work/update-key" --file "$work/fleet-agent-next.exe" --version 99.0.0 \
  --os windows --arch x86_64 --health-secs 60 --out "$work/update.json" >/dev/null
"$cloud" job "${curl_cloud[@]}" --type updateAgent --params-file "$work/update.json" \
  --file "$work/fleet-agent-next.exe" "$agent_id" >"$work/job.json"
# The updateAgent job's state and message, from the cloud's admin view.
job_state() {
  "$cloud" jobs "${curl_cloud[@]}" | python3 -c '
import json, sys
v = json.load(sys.stdin)
for j in (v["jobs"] if isinstance(v, dict) else v):
    if j["type"] == "updateAgent":
        msgs = [m.get("text", "") for m in ((j.get("result") or {}).get("messages") or [])]
        print(j["state"], *msgs)'
}
wait_for '[[ "$(job_state)" == *completed* || "$(job_state)" == *failed* ]]' 120 \
  || fail "updateAgent: no outcome in 120 s ($(job_state)); the log: $(tail -8 "$log")"
[[ "$(job_state)" == completed* ]] || fail "updateAgent: $(job_state); the log: $(tail -8 "$log")"
grep -q "Starting the staged agent version (child process)" "$log" || fail "no child start in the log"
ok "updateAgent 99.0.0: verified, staged, run by the service as its child, confirmed: job $(job_state)"
[ -f "$data/update/fleet-agent-99.0.0.exe" ] || fail "the staged file: $(ls "$data/update")"
# The agent's last heartbeat (kept as its JSON text) names the update that runs.
running=$("$cloud" agents "${curl_cloud[@]}" | python3 -c '
import json, sys
def find(v):
    if isinstance(v, str) and v.startswith("{"):
        v = json.loads(v)
    if isinstance(v, dict):
        if "agentUpdate" in v:
            return v["agentUpdate"].get("version")
        v = list(v.values())
    if isinstance(v, list):
        for x in v:
            r = find(x)
            if r:
                return r
print(find(json.load(sys.stdin)) or "")')
[ "$running" = 99.0.0 ] || fail "the heartbeat names update ${running:-none}: $("$cloud" agents "${curl_cloud[@]}" | head -30)"
wait_for '[ -n "$(metric '"$web2"' fleet_agent_polls_total)" ]' 30 || fail "the updated agent does not answer on $web2"
ok "the heartbeat names 99.0.0 (from $(w "$exe" version | awk '{ print $2 }')); the updated agent answers on port $web2"
out=$(w net stop FleetAgent)
wait_for 'tail -4 "$log" | grep -q "Agent stopped"' 30 || fail "net stop: no ordered stop in the log: $(tail -5 "$log")"
grep -q "The launcher closed this agent's input: stopping" "$log" || fail "net stop: the child was not asked to stop: $(tail -8 "$log")"
stop=$(tail -8 "$log" | tr -d '\r' | sed -n '/Shutting down/,$p' | sed 's/^[^ ]* *INFO [^ ]* //')
grep -q "Poller stopped" <<<"$stop" || fail "the ordered stop: $stop"
ok "net stop: the service closed its child's input; the child: $(tr '\n' ' ' <<<"$stop")"

echo "6. an upgrade that is given no properties keeps the installed choices, then the uninstall"
# The same build as version 0.1.1: a new product and package code, the same upgrade
# code, and the Upgrade table's bounds moved as wixl would have set them for 0.1.1 (older
# versions removed, newer ones refused).
upgrade="$work/fleet-agent-0.1.1-x64.msi"
cp "$msi" "$upgrade"
upgrade_code=$(msiinfo export "$msi" Property | tr -d '\r' | awk -F'\t' '$1=="UpgradeCode" { print $2 }')
# (The primary key's columns cannot be updated: the rows are replaced.)
msibuild "$upgrade" -q "UPDATE \`Property\` SET \`Value\` = '0.1.1' WHERE \`Property\` = 'ProductVersion'" \
  -q "DELETE FROM \`Upgrade\` WHERE \`ActionProperty\` = 'WIX_UPGRADE_DETECTED'" \
  -q "DELETE FROM \`Upgrade\` WHERE \`ActionProperty\` = 'WIX_DOWNGRADE_DETECTED'" \
  -q "INSERT INTO \`Upgrade\` (\`UpgradeCode\`, \`VersionMax\`, \`Attributes\`, \`ActionProperty\`) VALUES ('$upgrade_code', '0.1.1', 1, 'WIX_UPGRADE_DETECTED')" \
  -q "INSERT INTO \`Upgrade\` (\`UpgradeCode\`, \`VersionMin\`, \`Attributes\`, \`ActionProperty\`) VALUES ('$upgrade_code', '0.1.1', 2, 'WIX_DOWNGRADE_DETECTED')" \
  -q "UPDATE \`Property\` SET \`Value\` = '{$(python3 -c 'import uuid; print(str(uuid.uuid4()).upper())')}' WHERE \`Property\` = 'ProductCode'" \
  -s "Fleet Agent" "Fleet Agent project" "x64;1033" "{$(python3 -c 'import uuid; print(str(uuid.uuid4()).upper())')}"
before=$(w reg query "$key" | grep -o 'service run.*')
set +e
wine msiexec /i "$(winepath -w "$upgrade" | tr -d '\r')" /qn >"$work/msiup.log" 2>&1
rc=$?
set -e
[ "$rc" = 0 ] || fail "msiexec /i (upgrade) exited $rc: $(tr -d '\r' <"$work/msiup.log" | tail -5)"
after=$(w reg query "$key" | grep -o 'service run.*')
grep -qF -- "--web-port $web2 --web-port-fallback \"none\" --cloud-url \"https://127.0.0.1:$cport\"" <<<"$after" \
  || fail "the upgrade did not keep PORT, PORTFALLBACK and CLOUDURL: before $before; after $after"
cmp -s "$installed" "$exe" || fail "the upgrade did not install the executable"
versions=$(w reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall' /s | grep -i 'DisplayVersion' | grep -o '0\.1\.[0-9]*' | sort | tr '\n' ' ')
[ "$versions" = "0.1.1 " ] || fail "after the upgrade the products registered are: ${versions:-none} (0.1.0 must be gone)"
ok "msiexec /i 0.1.1 /qn over 0.1.0, no properties: 0.1.0 removed, and the service keeps $(grep -o -- '--web-port.*' <<<"$after")"
uninstall "$upgrade"
ok "msiexec /x: executable and service removed; configuration and state kept"

echo "7. the installer's interface (double-click), on the virtual screen"
web3=$((port + 5))
: >"$work/browser.log"
# PORT from the command line fills the port page; the admin types another there.
# Its verbose log is for the failure messages.
wine msiexec /i "$(winepath -w "$msi" | tr -d '\r')" PORT="$web2" /l*v "$(winepath -w "$work/ui.log" | tr -d '\r')" >"$work/msiui.log" 2>&1 &
msi_pid=$!
# Each dialog has its own title ("Fleet Agent Setup: Licence", ...): keys go to the one
# that is up, and which one is up after them is checked.
up() { xdotool search --onlyvisible --name "Fleet Agent Setup: $1" 2>/dev/null | head -1; }
wait_up() {
  local want=$1
  wait_for '[ -n "$(up "$want")" ]' 60 || fail "no \"$want\" dialog: $(tail -3 "$work/ui.log" | tr -d '\r')"
}
# Keys to dialog $1, then time for what they do to show.
keys() {
  local win
  win=$(up "$1")
  [ -n "$win" ] || fail "no \"$1\" dialog for the keys ${*:2}"
  xdotool windowfocus "$win" 2>/dev/null || true
  xdotool key --window "$win" --delay 100 "${@:2}"
  sleep 2
}
wait_up Licence
sleep 1
# Next is disabled until "I accept" is ticked: from the licence text, Tab goes to the box,
# then past Next to Cancel, whose Enter asks whether to cancel (answered No, the default).
keys Licence Tab Tab Return
[ -n "$(up Cancel)" ] && [ -z "$(up Port)" ] || fail "Next was not disabled before the licence was accepted (Tab stopped on it)"
keys Cancel Return
[ -z "$(up Cancel)" ] && [ -n "$(up Licence)" ] || fail "No on the cancel question did not go back to the licence"
keys Licence alt+a Return
wait_up Port
# The port page: its field has the focus, filled with PORT.
keys Port End BackSpace BackSpace BackSpace BackSpace BackSpace BackSpace
xdotool type --window "$(up Port)" --delay 100 "$web3"
sleep 1
keys Port Return
wait_for 'w reg query "$key" | grep -q -- "--web-port $web3 "' 60 || fail "the service was not installed with the port typed in the dialog: $(w reg query "$key" | grep ImagePath)"
ok "licence: Next disabled (Tab went past it to Cancel; No went back) until I accept (Alt+A) was ticked; port $web3 typed over $web2; Install: the service runs with --web-port $web3"
wait_for '[ -n "$(metric '"$web3"' fleet_agent_polls_total)" ]' 60 || fail "the page does not answer on $web3"
# The last page: Finish with "Open Fleet Agent in the browser" ticked (the default).
# (Enter while the progress shows would ask to cancel.)
wait_up Finished
sleep 1
keys Finished Return
wait_for '[ "$(opened)" = "http://localhost:$web3/" ]' 60 || fail "Finish did not open the page: $(opened); $(grep -a 'OpenPage' "$work/ui.log")"
wait_for '! kill -0 "$msi_pid" 2>/dev/null' 30 || fail "msiexec did not end after Finish"
ok "Finish with \"Open Fleet Agent in the browser\" ticked: the browser was given $(opened)"
uninstall
ok "msiexec /x: executable, service and shortcuts removed; configuration and state kept"
echo "Windows under Wine: all checks passed"
