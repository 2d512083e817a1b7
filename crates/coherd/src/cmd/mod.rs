//! One module per subcommand: each has `Args` (clap) and `run(Args) -> Result<ExitCode>`.

pub mod herd;
pub mod offsets;
pub mod output;
pub mod replay;
pub mod simulate;
pub mod splay;
