# On removal (not upgrade: $1 = 0), stop and disable the service where systemd runs.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now fleet-agent.service >/dev/null 2>&1 || :
fi
