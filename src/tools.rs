//! Offline tools: `ferrokube snapshot save|restore` and `ferrokube migrate` (the work is in the
//! storage crate: `embedded::snapshot`, `etcd::migrate`; this file parses flags and reports).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use ferrokube_storage::StorageError;
use ferrokube_storage::embedded::snapshot::{self, SnapshotInfo};
use ferrokube_storage::embedded::{DB_FILE_NAME, EmbeddedOptions, EmbeddedStore};
use ferrokube_storage::etcd::EtcdStore;

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// Saves a consistent snapshot of the embedded store to FILE. With a server running on
    /// the data directory, the snapshot is taken by the server (online, it keeps serving)
    /// and fetched over HTTPS with the admin kubeconfig; otherwise the store file is read
    /// directly. For the etcd backend use `etcdctl snapshot save`.
    Save {
        file: PathBuf,
        /// The server's data directory (default ~/.ferrokube).
        #[arg(long, env = "FERROKUBE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Kubeconfig of a system:masters user (default DATA_DIR/admin.kubeconfig).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Restores FILE as the store of a data directory that has none yet; start
    /// `ferrokube server --data-dir DIR` on it afterwards.
    Restore {
        file: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The data directory of the (stopped) embedded server to copy from.
    #[arg(long)]
    from: PathBuf,
    /// The etcd members to copy into (`https://a:2379,...`).
    #[arg(long = "to-etcd", value_delimiter = ',', required = true)]
    to_etcd: Vec<String>,
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    #[arg(long, requires = "etcd_keyfile")]
    etcd_certfile: Option<PathBuf>,
    #[arg(long, requires = "etcd_certfile")]
    etcd_keyfile: Option<PathBuf>,
    /// As the server's --etcd-prefix.
    #[arg(long, default_value = "/registry")]
    etcd_prefix: String,
}

fn default_data_dir(d: Option<PathBuf>) -> PathBuf {
    d.unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".ferrokube")
    })
}

fn report(what: &str, file: &Path, info: &SnapshotInfo, started: Instant) {
    println!(
        "{what} {}: revision {}, compacted {}, {} keys, {} bytes, {:.2}s",
        file.display(),
        info.revision,
        info.compacted,
        info.keys,
        info.bytes,
        started.elapsed().as_secs_f64()
    );
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `ferrokube snapshot ...`.
pub fn snapshot(cmd: SnapshotCommand) -> anyhow::Result<()> {
    let started = Instant::now();
    match cmd {
        SnapshotCommand::Save {
            file,
            data_dir,
            kubeconfig,
        } => {
            let dir = default_data_dir(data_dir);
            let db = dir.join("db").join(DB_FILE_NAME);
            if !db.is_file() {
                bail!("no embedded store at {}", db.display());
            }
            match snapshot::save_offline(&db, &file) {
                Ok(info) => {
                    report("saved (offline)", &file, &info, started);
                    Ok(())
                }
                Err(StorageError::Unavailable(_)) => {
                    let kubeconfig = kubeconfig.unwrap_or_else(|| dir.join("admin.kubeconfig"));
                    runtime()?.block_on(save_online(&kubeconfig, &file))?;
                    let info = snapshot::inspect(&file)?;
                    report(
                        "saved (online, by the running server)",
                        &file,
                        &info,
                        started,
                    );
                    Ok(())
                }
                Err(e) => Err(e).context("taking the snapshot"),
            }
        }
        SnapshotCommand::Restore { file, data_dir } => {
            let info = snapshot::restore(&file, &data_dir).with_context(|| {
                format!("restoring {} into {}", file.display(), data_dir.display())
            })?;
            report("restored", &file, &info, started);
            Ok(())
        }
    }
}

/// Fetches `/debug/ferrokube/snapshot` from the running server into `file`.
async fn save_online(kubeconfig: &Path, file: &Path) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let req = http::Request::get("/debug/ferrokube/snapshot")
        .body(kube::client::Body::empty())
        .context("building the snapshot request")?;
    let resp = client
        .send(req)
        .await
        .context("requesting the snapshot from the server")?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the snapshot")?
        .to_bytes();
    if !status.is_success() {
        bail!(
            "the server answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".partial");
    std::fs::write(&tmp, &body).with_context(|| format!("writing {}", file.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all())?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// `ferrokube migrate --from DIR --to-etcd ...`.
pub fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    runtime()?.block_on(async move {
        let db_dir = args.from.join("db");
        if !db_dir.join(DB_FILE_NAME).is_file() {
            bail!("no embedded store in {}", db_dir.display());
        }
        let source = EmbeddedStore::open(
            &db_dir,
            EmbeddedOptions {
                compaction_interval: None,
                ..EmbeddedOptions::default()
            },
        )
        .await
        .context("opening the embedded store (stop the server first)")?;
        let etcd_opts = ferrokube_apiserver::backend::EtcdFlags {
            servers: &args.to_etcd,
            cafile: args.etcd_cafile.as_deref(),
            certfile: args.etcd_certfile.as_deref(),
            keyfile: args.etcd_keyfile.as_deref(),
            prefix: &args.etcd_prefix,
            compaction_interval: 0,
        }
        .options()?;
        let target = EtcdStore::connect(etcd_opts)
            .await
            .context("connecting to etcd")?;
        let report = ferrokube_storage::etcd::migrate::migrate(&*source, &target, "/registry/")
            .await
            .context("migrating")?;
        source.close().await;
        println!(
            "migrated {} keys from revision {} into etcd (etcd revision {} → {}, {} bumps; \
             lowest new resourceVersion {}) in {:.2}s",
            report.keys,
            report.source_revision,
            report.etcd_revision_before,
            report.etcd_revision_after,
            report.bumps,
            report.lowest_new_revision,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}
