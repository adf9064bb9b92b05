# Service account, state directory, configuration readable by the agent only; then the
# unit is enabled and started where systemd runs ($1 = 1 on install, 2 on upgrade).
getent group fleet-agent >/dev/null || groupadd -r fleet-agent
getent passwd fleet-agent >/dev/null || \
    useradd -r -g fleet-agent -d /var/lib/fleet-agent -s /sbin/nologin fleet-agent
install -d -o fleet-agent -g fleet-agent -m 0700 /var/lib/fleet-agent
# A store created before the package (the CLI run as root, a copy) would be refused
# by the service account: the state is the account's.
chown -R fleet-agent:fleet-agent /var/lib/fleet-agent
chown root:fleet-agent /etc/fleet-agent/fleet-agent.toml
chmod 0640 /etc/fleet-agent/fleet-agent.toml
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now fleet-agent.service >/dev/null 2>&1 || :
    else
        systemctl try-restart fleet-agent.service >/dev/null 2>&1 || :
    fi
fi
