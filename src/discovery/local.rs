//! "Search the local network": targets derived from the host's own interfaces. Loopback,
//! link-local and virtual bridges are skipped unless asked; each subnet is capped (a /16
//! on the host becomes its /22 around the host's address) with a warning. IPv6 subnets
//! are never swept (a /64 cannot be); printers there are found by mDNS.

use crate::targets::Spec;
use ipnetwork::{IpNetwork, Ipv4Network};
use std::net::Ipv4Addr;

/// Interface name prefixes of virtual bridges and container links.
const VIRTUAL: &[&str] = &[
    "docker",
    "br-",
    "virbr",
    "veth",
    "lxc",
    "lxd",
    "cni",
    "flannel",
    "vmnet",
    "vboxnet",
    "tun",
    "tap",
    "wg",
    "zt",
    "tailscale",
];

/// Returns one target per eligible IPv4 interface subnet, and warnings.
pub fn local_networks(max_prefix: u8, include_virtual: bool) -> (Vec<Spec>, Vec<String>) {
    let mut warnings = Vec::new();
    let ifaces = match if_addrs::get_if_addrs() {
        Ok(i) => i,
        Err(e) => {
            return (
                Vec::new(),
                vec![format!("cannot list network interfaces: {e}")],
            );
        }
    };
    let mut out = Vec::new();
    for i in ifaces {
        let if_addrs::IfAddr::V4(v4) = &i.addr else {
            continue;
        };
        if let Some(s) = eligible(
            &i.name,
            v4.ip,
            v4.prefixlen,
            max_prefix,
            include_virtual,
            &mut warnings,
        ) && !out.contains(&s)
        {
            out.push(s);
        }
    }
    if out.is_empty() {
        warnings.push(
            "no local IPv4 network to search (only loopback, link-local or virtual interfaces)"
                .into(),
        );
    }
    (out, warnings)
}

/// Decides whether one interface address yields a target, capping its prefix.
pub fn eligible(
    name: &str,
    ip: Ipv4Addr,
    prefix: u8,
    max_prefix: u8,
    include_virtual: bool,
    warnings: &mut Vec<String>,
) -> Option<Spec> {
    if ip.is_loopback() || ip.is_link_local() || ip.is_unspecified() {
        return None;
    }
    if !include_virtual && VIRTUAL.iter().any(|v| name.starts_with(v)) {
        return None;
    }
    let mut p = prefix;
    if p < max_prefix {
        warnings.push(format!("interface {name}: {ip}/{prefix} is larger than /{max_prefix}; only the /{max_prefix} around {ip} is searched"));
        p = max_prefix;
    }
    let net = Ipv4Network::new(ip, p).ok()?;
    let net = Ipv4Network::new(net.network(), p).ok()?;
    Some(Spec::Cidr(IpNetwork::V4(net)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_loopback_link_local_and_bridges_and_caps_big_subnets() {
        let mut w = Vec::new();
        assert_eq!(
            eligible("lo", Ipv4Addr::LOCALHOST, 8, 22, false, &mut w),
            None
        );
        assert_eq!(
            eligible("eth0", Ipv4Addr::new(169, 254, 3, 4), 16, 22, false, &mut w),
            None
        );
        assert_eq!(
            eligible(
                "docker0",
                Ipv4Addr::new(172, 17, 0, 1),
                16,
                22,
                false,
                &mut w
            ),
            None
        );
        assert!(
            eligible(
                "docker0",
                Ipv4Addr::new(172, 17, 0, 1),
                24,
                22,
                true,
                &mut w
            )
            .is_some()
        );
        assert!(w.is_empty());
        let s = eligible("eth0", Ipv4Addr::new(10, 20, 30, 40), 16, 22, false, &mut w).unwrap();
        assert_eq!(s.to_string(), "10.20.28.0/22");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("eth0") && w[0].contains("/22"));
        let s = eligible("eth0", Ipv4Addr::new(192, 0, 2, 77), 24, 22, false, &mut w).unwrap();
        assert_eq!(s.to_string(), "192.0.2.0/24");
    }
}
