//! `fleet-cloud`: the reference cloud. `serve` runs it over HTTPS (a generated CA and
//! certificate unless given); `create-agent` makes an agent instance and prints its
//! activation code.
fn main() {
    if let Err(e) = fleet_cloud::cli::main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
