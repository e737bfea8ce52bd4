//! The `pwreset-operator` binary: parses the command line (`cli`) and runs the subcommand.

use clap::Parser;
use tracing::error;

use pwreset_operator::cli::{Cli, Command};
use pwreset_operator::{api, install_crypto_provider, run, telemetry};

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", api::crd_yaml());
            Ok(())
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            install_crypto_provider();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let result = runtime.block_on(run::run(*args));
            if let Err(e) = &result {
                error!(error = format!("{e:#}"), "pwreset-operator stopped");
            }
            result
        }
    }
}
