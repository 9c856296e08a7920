//! `cardwire migrate`: PostgreSQL's schema upgraded or checked, a sled folder copied in.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::shared::*;
use crate::config::Config;

/// `cardwire migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Change nothing: print where the schema stands; exit 1 unless it is this version's.
    #[arg(long, conflicts_with = "from_sled")]
    check: bool,
    /// Copy the state of a sled data folder (a single instance's `data_dir`, its gateway
    /// stopped) into the configured PostgreSQL database, which must hold none yet. The folder
    /// is opened as a start would open it and read, nothing taken out.
    #[arg(long, value_name = "DIR")]
    from_sled: Option<std::path::PathBuf>,
}

/// `cardwire migrate [--check]`: the schema of the configured PostgreSQL database. The
/// gateway migrates by itself when it starts; this is for checking before a deploy, or
/// upgrading ahead of it.
pub(super) fn migrate(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    use crate::store::pg::migrations;
    let config = match Config::load(args.config.config.as_deref()) {
        Ok(c) => c,
        Err(p) => return Ok(print_problems(p)),
    };
    let Some(pg) = &config.store.postgres else {
        anyhow::bail!(
            "the config keeps its state in sled (no store.postgres): there is no schema to migrate"
        );
    };
    // As the gateway does: TLS as the URL and `store.postgres.tls` say, a server that does not
    // answer an error in seconds.
    let connector = crate::store::pg::tls::Connector::new(&pg.connect_url())
        .map_err(|e| anyhow::anyhow!("store.postgres.url: {e}"))?;
    let mut client = connector
        .connect()
        .context("cannot reach PostgreSQL (store.postgres.url)")?;
    if !args.check {
        // A database from a newer cardwire is left alone; the status below says so.
        migrations::migrate(&mut client)?;
    }
    let status = migrations::status(&mut client)?;
    println!("{}", status.describe());
    if !status.up_to_date() {
        return Ok(ExitCode::FAILURE);
    }
    drop(client);
    if let Some(dir) = &args.from_sled {
        import_sled(&config, pg, dir)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `cardwire migrate --from-sled DIR`: a sled data folder's state into PostgreSQL.
pub(super) fn import_sled(
    config: &Config,
    pg: &crate::config::PostgresConfig,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    if !dir.join("sled").is_dir() {
        anyhow::bail!(
            "{} is not a cardwire data folder (no sled/ in it): name the data_dir of the instance to move",
            dir.display()
        );
    }
    let Some(shared) = config.connect.secrets_key.as_deref() else {
        anyhow::bail!("store.postgres needs connect.secrets_key (see `cardwire check`)");
    };
    // The folder's own key if it made one, else the configured one (which it then used).
    let folder_key = (!dir.join("secrets.key").exists()).then_some(shared);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let imported = runtime.block_on(async {
        let from = crate::store::Store::open(dir, folder_key)
            .with_context(|| format!("cannot open the sled store in {}", dir.display()))?;
        let settings = crate::store::pg::PgSettings {
            url: pg.connect_url(),
            pool: 2,
            lease: pg.lease,
        };
        let to = crate::store::pg::PgStore::open(&settings, shared, Default::default())
            .context("cannot open the PostgreSQL store (store.postgres.url)")?;
        let from2 = from.clone();
        let imported =
            tokio::task::spawn_blocking(move || crate::store::pg::import::import(&from2, &to))
                .await
                .context("the import panicked")??;
        anyhow::Ok(imported)
    })?;
    println!("imported from {}: {imported}", dir.display());
    Ok(())
}
