//! `fleet-agent` binary: parses the command line, sets up logging, runs the command and
//! maps its result to an exit code. All logic lives in the library.

use clap::Parser;
use fleet_agent::cli;

fn main() {
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(cli::exit::FAILURE);
        }
    };
    if let Err(e) = rt.block_on(cli::run(cli)) {
        if e.code == cli::exit::RESTART {
            // Not an error: the service manager is asked to start the agent again.
            eprintln!("{}", e.message);
        } else {
            eprintln!("error: {}", e.message);
        }
        std::process::exit(e.code);
    }
}
