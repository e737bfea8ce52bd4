//! `graph-emulator`: see `docs/emulator.md`.

use clap::Parser as _;
use graph_emulator::{self as emulator, Args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    emulator::init_logging(args.log_format);
    emulator::run(args).await
}
