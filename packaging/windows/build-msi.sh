#!/usr/bin/env bash
# Builds the Windows executable (x86_64-pc-windows-gnu, linked by mingw-w64) and the MSI
# (wixl, Debian msitools) from packaging/windows/fleet-agent.wxs, then checks what the MSI
# holds: the executable and the default configuration byte for byte, the service
# "FleetAgent" with its command line (configuration path, PORT), the launch conditions,
# the configuration's NeverOverwrite/Permanent attributes, the dialogs and the shortcuts.
# Run by .ci/run.
# Nothing here runs the executable: tests/wine/windows-under-wine.sh does, under Wine.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-pc-windows-gnu
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo build --release -q --target "$target" --bin fleet-agent
exe="target/$target/release/fleet-agent.exe"
file "$exe" | grep "PE32+ executable.*x86-64" >/dev/null || { file "$exe"; echo "not a 64-bit Windows executable"; exit 1; }
echo "Windows executable: $exe, $(stat -c %s "$exe") bytes ($(du -h "$exe" | cut -f1))"

mkdir -p target/windows
msi="target/windows/fleet-agent-$version-x64.msi"
rm -f "$msi"
# wixl resolves Source paths relative to the working directory (absolute ones fail).
wixl -a x64 -D Version="$version" -D BinDir="target/$target/release" \
     -D ConfigFile=config/fleet-agent.toml -o "$msi" packaging/windows/fleet-agent.wxs
# wixl 0.101 ignores NeverOverwrite/Permanent: set them in the Component table
# (256 = 64-bit, + 128 NeverOverwrite, + 16 Permanent).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
msiinfo export "$msi" Component > "$work/Component.idt"
awk 'BEGIN{FS=OFS="\t"} $1=="DefaultConfig"{$4=400} {print}' "$work/Component.idt" > "$work/c" \
  && mv "$work/c" "$work/Component.idt"
(cd "$work" && msibuild "$OLDPWD/$msi" -i Component.idt)
# The activation's command line holds the code: msidbCustomActionTypeHideTarget (8192)
# keeps it out of the installer's log (wixl has no attribute for it).
msiinfo export "$msi" CustomAction > "$work/CustomAction.idt"
awk 'BEGIN{FS=OFS="\t"} $1=="Activate" && int($2 / 8192) % 2 == 0 {$2 += 8192} {print}' "$work/CustomAction.idt" > "$work/c" \
  && mv "$work/c" "$work/CustomAction.idt"
(cd "$work" && msibuild "$OLDPWD/$msi" -i CustomAction.idt)
# The dialogs (wixl builds none), from packaging/windows/ui: the licence (LICENSE as RTF),
# the port, the progress, and the end with "Open Fleet Agent in the browser" (LAUNCHPAGE,
# the OpenPage action), as the seed's installer has them; a silent install (/qn, /qb)
# shows none of them.
mkdir "$work/ui"
cp packaging/windows/ui/*.idt "$work/ui/"
# Brackets as RTF escapes: the installer would read [name] as a property.
RTF="{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Tahoma;}}\\fs16 $(sed -e 's/\[/\\'\''5b/g' -e 's/\]/\\'\''5d/g' -e 's/$/\\par /' LICENSE | tr -d '\n')}" \
  awk '{ i = index($0, "@LICENSE_RTF@"); if (i) $0 = substr($0, 1, i - 1) ENVIRON["RTF"] substr($0, i + 13) } 1' \
  packaging/windows/ui/Control.idt > "$work/ui/Control.idt"
(cd "$work/ui" && for t in *.idt; do msibuild "$OLDPWD/$msi" -i "$t"; done)
msibuild "$msi" -q "INSERT INTO \`InstallUISequence\` (\`Action\`, \`Condition\`, \`Sequence\`) VALUES ('LicenseDlg', 'NOT Installed', 1230)" \
  -q "INSERT INTO \`InstallUISequence\` (\`Action\`, \`Sequence\`) VALUES ('ProgressDlg', 1280)" \
  -q "INSERT INTO \`InstallUISequence\` (\`Action\`, \`Sequence\`) VALUES ('ExitDlg', -1)" \
  -q "INSERT INTO \`InstallUISequence\` (\`Action\`, \`Sequence\`) VALUES ('UserExitDlg', -2)" \
  -q "INSERT INTO \`InstallUISequence\` (\`Action\`, \`Sequence\`) VALUES ('FatalErrorDlg', -3)" \
  -q "INSERT INTO \`Property\` (\`Property\`, \`Value\`) VALUES ('DefaultUIFont', 'DlgFont8')" \
  -q "INSERT INTO \`Property\` (\`Property\`, \`Value\`) VALUES ('ErrorDialog', 'ErrorDlg')" \
  -q "UPDATE \`Property\` SET \`Value\` = 'WIX_DOWNGRADE_DETECTED;WIX_UPGRADE_DETECTED;PORT;PORTFALLBACK;CLOUDURL;ACTIVATIONCODE' WHERE \`Property\` = 'SecureCustomProperties'" \
  -q "UPDATE \`Shortcut\` SET \`Name\` = 'FLEETAG|Fleet Agent'" \
  -q "UPDATE \`Registry\` SET \`Key\` = 'Software\\Fleet Agent' WHERE \`Component_\` = 'Choices'"
echo "MSI: $msi, $(stat -c %s "$msi") bytes ($(du -h "$msi" | cut -f1))"

fail() { echo "MSI check failed: $*"; exit 1; }
# Each table is exported to a file before it is searched: `msiinfo export | grep -q` under
# pipefail fails at random when grep quits early and msiinfo dies of SIGPIPE (CI saw
# "no PORT condition" on a good MSI that way).
for table in ServiceInstall ServiceControl CustomAction InstallExecuteSequence Property LaunchCondition Component \
    AppSearch Registry Dialog Control ControlEvent ControlCondition InstallUISequence CheckBox Shortcut; do
  msiinfo export "$msi" "$table" | tr -d '\r' > "$work/$table"
done
awk -F'\t' '$1=="FleetAgentService"' "$work/ServiceInstall" > "$work/svc"
# Name, type 16 (own process), start 2 (automatic), LocalSystem, the command line.
[ -n "$(awk -F'\t' '$2=="FleetAgent" && $4==16 && $5==2 && $9=="LocalSystem"' "$work/svc")" ] \
  || fail "service row: $(cat "$work/svc")"
grep -F 'service run --config "[CommonAppDataFolder]FleetAgent\fleet-agent.toml" --state-dir "[CommonAppDataFolder]FleetAgent" --web-port [PORT] --web-port-fallback "[PORTFALLBACK]" --cloud-url "[CLOUDURL]"' "$work/svc" >/dev/null \
  || fail "service command line: $(cat "$work/svc")"
[ -n "$(awk -F'\t' '$2=="FleetAgent" && $3==163' "$work/ServiceControl")" ] \
  || fail "ServiceControl must start on install, stop on install/uninstall, remove on uninstall (163)"
[ -n "$(awk -F'\t' '$1=="SetServiceRecovery" && $3=="FleetAgentExe" && $4=="service recovery"' "$work/CustomAction")" ] \
  || fail "no recovery custom action"
# ACTIVATIONCODE: `activate` with the service's configuration, state and cloud URL.
[ -n "$(awk -F'\t' '$1=="Activate" && int($2 / 8192) % 2 == 1 && $3=="FleetAgentExe" && index($4, "activate --code \"[ACTIVATIONCODE]\"") == 1 && index($4, "--state-dir \"[CommonAppDataFolder]FleetAgent\" --cloud-url \"[CLOUDURL]\"")' "$work/CustomAction")" ] \
  || fail "no activation custom action: $(grep Activate "$work/CustomAction")"
grep -x $'MsiHiddenProperties\tACTIVATIONCODE' "$work/Property" >/dev/null || fail "ACTIVATIONCODE must be hidden from the log"
sort -t$'\t' -k3n "$work/InstallExecuteSequence" > "$work/seq"
# A deferred action must sit after InstallServices and before InstallFinalize.
awk -F'\t' '$1=="InstallServices"{s=$3} $1=="SetServiceRecovery"{r=$3} $1=="InstallFinalize"{f=$3} END{exit !(s && r && f && s<r && r<f)}' "$work/seq" \
  || fail "the recovery action must run between InstallServices and InstallFinalize: $(grep -E 'InstallServices|SetServiceRecovery|InstallFinalize' "$work/seq")"
# The activation: deferred, only when a code is given, before the service starts.
awk -F'\t' '$1=="InstallServices"{s=$3} $1=="Activate"{a=$3; c=$2} $1=="StartServices"{t=$3} END{exit !(s && a && t && s<a && a<t && c=="ACTIVATIONCODE AND NOT REMOVE")}' "$work/seq" \
  || fail "the activation must run after InstallServices and before StartServices, on ACTIVATIONCODE: $(grep -E 'InstallServices|Activate|StartServices' "$work/seq")"
# PORT, PORTFALLBACK, CLOUDURL: given, else remembered from the installed version, else
# the default (80; 8080,8088), in both sequences before LaunchConditions checks PORT.
[ -n "$(awk -F'\t' '$1=="DefaultPort" && $2 % 64 == 51 && $3=="PORT" && $4=="80"' "$work/CustomAction")" ] || fail "PORT must default to 80"
[ -n "$(awk -F'\t' '$1=="DefaultPortFallback" && $2 % 64 == 51 && $3=="PORTFALLBACK" && $4=="8080,8088"' "$work/CustomAction")" ] || fail "PORTFALLBACK must default to 8080,8088"
! grep -qE $'^(PORT|PORTFALLBACK|CLOUDURL)\t' "$work/Property" || fail "a default in the Property table hides whether a value was given"
for p in PORT PORTFALLBACK CLOUDURL; do
  [ -n "$(awk -F'\t' -v p="$p" '$3==p && $4=="[SAVED" p "]"' "$work/CustomAction")" ] || fail "$p is not taken from the installed version"
  grep -q $'^SAVED'"$p"$'\t' "$work/AppSearch" || fail "SAVED$p is not searched"
  [ -n "$(awk -F'\t' -v p="$p" '$5=="[" p "]"' "$work/Registry")" ] || fail "$p is not remembered in the registry"
done
for sq in InstallUISequence InstallExecuteSequence; do
  awk -F'\t' '$1=="AppSearch"{a=$3} $1=="UseSavedPort"{u=$3; uc=$2} $1=="DefaultPort"{d=$3; dc=$2} $1=="LaunchConditions"{l=$3}
    END{exit !(a && a<u && u<d && d<l && uc=="NOT PORT AND SAVEDPORT" && dc=="NOT PORT")}' "$work/$sq" \
    || fail "$sq: the remembered and default PORT must be set after AppSearch and before LaunchConditions"
done
grep -F 'PORT >= 1 AND PORT <= 65535' "$work/LaunchCondition" >/dev/null \
  || fail "no PORT condition: $(cat "$work/LaunchCondition")"
[ -n "$(awk -F'\t' '$1=="DefaultConfig" && $4==400' "$work/Component")" ] \
  || fail "the configuration component is not NeverOverwrite+Permanent"
# The interface: licence, port, progress, then the page opened at Finish when ticked.
for d in LicenseDlg PortDlg PortErrorDlg CancelDlg ProgressDlg ExitDlg UserExitDlg FatalErrorDlg ErrorDlg; do
  [ -n "$(awk -F'\t' -v d="$d" '$1==d' "$work/Dialog")" ] || fail "no dialog $d"
done
awk -F'\t' '$1=="LicenseDlg"{l=$3; c=$2} $1=="ProgressDlg"{p=$3} $1=="ExecuteAction"{e=$3} $1=="ExitDlg"{x=$3} $1=="UserExitDlg"{u=$3} $1=="FatalErrorDlg"{f=$3}
  END{exit !(l && l<p && p<e && c=="NOT Installed" && x==-1 && u==-2 && f==-3)}' "$work/InstallUISequence" \
  || fail "the dialogs' order: $(cat "$work/InstallUISequence")"
lic=$(awk -F'\t' '$1=="LicenseDlg" && $2=="LicenseText" && $3=="ScrollableText" {print $10}' "$work/Control")
[[ "$lic" == '{\rtf1'* ]] && grep -q 'Apache License' <<<"$lic" && grep -q 'END OF TERMS AND CONDITIONS' <<<"$lic" && ! grep -q '[][]' <<<"$lic" \
  || fail "the licence page does not hold LICENSE as RTF (without brackets): ${lic:0:120}"
[ -n "$(awk -F'\t' '$1=="LicenseDlg" && $2=="Next" && $3=="Disable" && $4=="LICENSEACCEPTED <> \"1\""' "$work/ControlCondition")" ] \
  || fail "Next must stay disabled until the licence is accepted"
[ -n "$(awk -F'\t' '$1=="PortDlg" && $2=="PortEdit" && $3=="Edit" && $9=="PORT"' "$work/Control")" ] || fail "no PORT field"
# The installer's own messages in a dialog of the package (65536: the error dialog).
grep -x $'ErrorDialog\tErrorDlg' "$work/Property" >/dev/null && [ -n "$(awk -F'\t' '$1=="ErrorDlg" && int($6 / 65536) % 2 == 1' "$work/Dialog")" ] \
  || fail "no error dialog"
# What the dialogs set must reach the elevated part of the install.
grep -x $'SecureCustomProperties\tWIX_DOWNGRADE_DETECTED;WIX_UPGRADE_DETECTED;PORT;PORTFALLBACK;CLOUDURL;ACTIVATIONCODE' "$work/Property" >/dev/null \
  || fail "SecureCustomProperties: $(grep SecureCustomProperties "$work/Property")"
[ -n "$(awk -F'\t' '$1=="ExitDlg" && $2=="Launch" && $3=="CheckBox" && $9=="LAUNCHPAGE"' "$work/Control")" ] || fail "no LAUNCHPAGE box"
grep -x $'LAUNCHPAGE\t1' "$work/Property" >/dev/null && grep -x $'LAUNCHPAGE\t1' "$work/CheckBox" >/dev/null \
  || fail "Open Fleet Agent in the browser must be ticked by default"
[ -n "$(awk -F'\t' '$1=="ExitDlg" && $2=="Finish" && $3=="DoAction" && $4=="OpenPage" && $5=="LAUNCHPAGE = \"1\" AND NOT Installed"' "$work/ControlEvent")" ] \
  || fail "Finish must run OpenPage when LAUNCHPAGE is ticked"
args='page open --web-port [PORT] --web-port-fallback "[PORTFALLBACK]"'
# 18: the installed executable; + 64 continue and + 128 do not wait (the page may take a while).
[ -n "$(awk -F'\t' -v a="$args" '$1=="OpenPage" && $2 % 64 == 18 && int($2 / 64) % 4 == 3 && $3=="FleetAgentExe" && $4==a' "$work/CustomAction")" ] \
  || fail "no OpenPage action: $(grep OpenPage "$work/CustomAction")"
for d in DesktopFolder ProgramMenuFolder; do
  [ -n "$(awk -F'\t' -v d="$d" -v a="$args" '$2==d && $3=="FLEETAG|Fleet Agent" && $5=="[#FleetAgentExe]" && $6==a' "$work/Shortcut")" ] \
    || fail "no shortcut in $d: $(cat "$work/Shortcut")"
done
msiextract -C "$work/x" "$msi" >/dev/null
cmp "$exe" "$(find "$work/x" -name fleet-agent.exe)" || fail "the packed executable differs"
conf=$(find "$work/x" -name fleet-agent.toml)
cmp config/fleet-agent.toml "$conf" || fail "the packed configuration differs"
echo "MSI contents:"; (cd "$work/x" && find . -type f -printf '  %p %s bytes\n')
# The agent alone: the reference cloud and the lab tools never reach an agent host.
[ "$(find "$work/x" -type f | wc -l)" = 2 ] || fail "the MSI holds more than the agent and its configuration"
echo "MSI checked: service FleetAgent (automatic, LocalSystem, recovery set after install), PORT=80 by default (else 8080, 8088), CLOUDURL and ACTIVATIONCODE (hidden) for silent installs; dialogs: licence, port, progress, Open Fleet Agent in the browser (ticked); desktop and Start menu shortcuts"
