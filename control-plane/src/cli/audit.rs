//! `switchyard audit verify`: checks the audit log's hash chain in the database that `serve`
//! / `control-plane` would use (same `--data-dir` / `--database-url`). Exits non-zero and
//! names the first bad entry when an entry was modified or deleted.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use switchyard_control_plane::audit::verify_chain;
use switchyard_control_plane::store;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of the audit log.
    Verify(DatabaseArgs),
}

#[derive(Args)]
pub struct DatabaseArgs {
    /// Where the SQLite database lives (as for `serve`).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./switchyard-data")]
    data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to SQLite in the data dir.
    #[arg(long, env = "SWITCHYARD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(args).await,
    }
}

#[allow(clippy::print_stdout)]
async fn verify(args: DatabaseArgs) -> anyhow::Result<()> {
    let url = match args.database_url {
        Some(url) => url,
        None => {
            let path = args.data_dir.join("switchyard.db");
            anyhow::ensure!(
                path.exists(),
                "no database at {} (give --data-dir or --database-url)",
                path.display()
            );
            super::sqlite_url(&args.data_dir)
        }
    };
    let store = store::connect(&url).await.context("opening the database")?;
    let report = verify_chain(&*store)
        .await
        .context("the audit log failed verification")?;
    println!(
        "audit log OK: {} entries, head {} {}",
        report.entries, report.head_seq, report.head_hash
    );
    Ok(())
}
