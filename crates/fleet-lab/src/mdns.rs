//! `fleet-lab mdns-advertise`: advertises a printer service over mDNS/DNS-SD until
//! Ctrl-C (labs, and the mDNS test inside a network namespace).

use clap::Args;
use fleet_agent::cli::exit::{self, Exit};
use std::io::Write;
use std::net::IpAddr;

/// `mdns-advertise` arguments.
#[derive(Args, Debug)]
pub struct MdnsAdvertiseArgs {
    /// Instance name.
    #[arg(long)]
    pub instance: String,
    /// Service type.
    #[arg(long, default_value = "_ipp._tcp.local.")]
    pub service_type: String,
    /// Address of the advertised host.
    #[arg(long)]
    pub ip: IpAddr,
    /// Port.
    #[arg(long, default_value_t = 631)]
    pub port: u16,
    /// TXT record entry KEY=VALUE (repeatable).
    #[arg(long)]
    pub txt: Vec<String>,
}

/// Advertises until Ctrl-C.
///
/// # Errors
/// When the mDNS daemon cannot start.
pub async fn run(a: MdnsAdvertiseArgs) -> Result<(), Exit> {
    let txt: Vec<(String, String)> = a
        .txt
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let pairs: Vec<(&str, &str)> = txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let host = format!("{}.local.", a.instance.to_lowercase().replace(' ', "-"));
    let daemon = fleet_agent::discovery::mdns::advertise(
        &a.instance,
        &a.service_type,
        &host,
        a.ip,
        a.port,
        &pairs,
    )
    .map_err(|e| Exit {
        code: exit::FAILURE,
        message: format!("mDNS: {e}"),
    })?;
    println!(
        "advertising {} ({}) at {}:{}",
        a.instance, a.service_type, a.ip, a.port
    );
    std::io::stdout().flush().ok();
    fleet_agent::platform::shutdown_signal().await;
    daemon.shutdown().ok();
    Ok(())
}
