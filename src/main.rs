//! The `pwreset-operator` binary; everything lives in the library (`cli`, `run`).

fn main() -> anyhow::Result<()> {
    pwreset_operator::cli::main()
}
