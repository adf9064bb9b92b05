//! mDNS / DNS-SD browsing (mdns-sd) for printer services; TXT hints are kept. Note that
//! the mdns-sd daemon joins multicast on every interface when it starts, so tests run
//! it inside a network namespace they create.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Printer service types browsed.
pub const SERVICE_TYPES: &[&str] = &[
    "_ipp._tcp.local.",
    "_ipps._tcp.local.",
    "_pdl-datastream._tcp.local.",
    "_printer._tcp.local.",
];

/// TXT keys kept as hints.
pub const TXT_KEYS: &[&str] = &[
    "UUID", "ty", "product", "adminurl", "note", "usb_MFG", "usb_MDL", "rp",
];

/// One resolved printer service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Sighting {
    /// Service instance full name.
    pub instance: String,
    /// Service type.
    pub service_type: String,
    /// Host name from the SRV record.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Addresses of the host.
    pub addresses: Vec<IpAddr>,
    /// Kept TXT keys.
    pub txt: BTreeMap<String, String>,
}

/// Browses every printer service type for `duration` and returns what resolved.
///
/// # Errors
/// When the mDNS daemon cannot start.
pub async fn browse(duration: Duration) -> Result<Vec<Sighting>, String> {
    let daemon = mdns_sd::ServiceDaemon::new().map_err(|e| e.to_string())?;
    let mut receivers = Vec::new();
    for t in SERVICE_TYPES {
        receivers.push(daemon.browse(t).map_err(|e| format!("{t}: {e}"))?);
    }
    let deadline = tokio::time::Instant::now() + duration;
    let mut found: BTreeMap<String, Sighting> = BTreeMap::new();
    let mut set = tokio::task::JoinSet::new();
    for rx in receivers {
        set.spawn(async move {
            let mut out = Vec::new();
            while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, rx.recv_async()).await {
                if let mdns_sd::ServiceEvent::ServiceResolved(info) = ev {
                    let txt = TXT_KEYS
                        .iter()
                        .filter_map(|k| {
                            info.txt_properties
                                .get_property_val_str(k)
                                .map(|v| ((*k).to_string(), v.to_string()))
                        })
                        .collect();
                    let mut addresses: Vec<IpAddr> =
                        info.addresses.iter().map(|a| a.to_ip_addr()).collect();
                    addresses.sort();
                    out.push(Sighting {
                        instance: info.fullname.clone(),
                        service_type: info.ty_domain.clone(),
                        host: info.host.clone(),
                        port: info.port,
                        addresses,
                        txt,
                    });
                }
            }
            out
        });
    }
    while let Some(r) = set.join_next().await {
        for s in r.unwrap_or_default() {
            found.entry(s.instance.clone()).or_insert(s);
        }
    }
    if let Ok(rx) = daemon.shutdown() {
        rx.recv_async().await.ok();
    }
    Ok(found.into_values().collect())
}

/// Advertises one printer service until the returned daemon is dropped or shut down
/// (labs, demos and the discovery tests).
///
/// # Errors
/// When the daemon cannot start or the service is invalid.
pub fn advertise(
    instance: &str,
    service_type: &str,
    host: &str,
    ip: IpAddr,
    port: u16,
    txt: &[(&str, &str)],
) -> Result<mdns_sd::ServiceDaemon, String> {
    let daemon = mdns_sd::ServiceDaemon::new().map_err(|e| e.to_string())?;
    let info = mdns_sd::ServiceInfo::new(service_type, instance, host, ip, port, txt)
        .map_err(|e| e.to_string())?;
    daemon.register(info).map_err(|e| e.to_string())?;
    Ok(daemon)
}
