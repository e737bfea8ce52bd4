//! The `pwreset-operator` binary: parses the command line (`cli`) and runs the subcommand.

use clap::Parser;
use tracing::error;

use pwreset_operator::cli::{Cli, Command, CrdKind};
use pwreset_operator::{api, api_reset, check, install_crypto_provider, login, run, telemetry};

// `--features dhat-heap`: a heap profile, to see where memory goes (bench/README.md). The
// default build keeps glibc's allocator: mimalloc measured worse (bench/README.md).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> anyhow::Result<()> {
    // Writes dhat-heap.json in the working directory when `run` returns (SIGTERM).
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    match Cli::parse().command {
        Command::Crd { kind } => {
            match kind {
                Some(CrdKind::PasswordReset) => print!("{}", api_reset::crd_yaml()),
                _ => print!("{}", api::crd_yaml()),
            }
            Ok(())
        }
        Command::Check(args) => {
            // No log subscriber: the report is the output, one line per check.
            install_crypto_provider();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let (text, code) = check::report(&runtime.block_on(check::check(&args)));
            print!("{text}");
            std::io::Write::flush(&mut std::io::stdout())?;
            std::process::exit(code);
        }
        Command::Login(args) => {
            // No log subscriber: nothing the libraries trace can reach a terminal or a file.
            install_crypto_provider();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let code = runtime.block_on(login::run(*args));
            drop(runtime);
            std::process::exit(i32::from(code));
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            install_crypto_provider();
            // One thread: the work is waiting on two APIs, and every hand-off between threads
            // (a reconcile on one, its HTTP connection on another) cost a wake-up: 82 µs of CPU
            // per steady poll with tokio's thread pool, 61 µs on one thread (bench/README.md).
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let result = runtime.block_on(run::run(*args));
            if let Err(e) = &result {
                error!(error = format!("{e:#}"), "pwreset-operator stopped");
            }
            result
        }
    }
}
