//! Consistent snapshots of the embedded store (`ferrokube snapshot save|restore`).
//!
//! A snapshot is a redb file with the store's four tables, copied from ONE read transaction:
//! redb read transactions are snapshots that writers never disturb, so a running server keeps
//! serving while a snapshot is taken and the copy is the state at exactly one revision
//! (history, events and the compacted revision included, so watches and paginated lists
//! resume over a restored store as over the original). The copy is written to `FILE.partial`,
//! committed with an fsync, then renamed, so a crash never leaves a truncated `FILE`.
//!
//! Restoring checks the file (tables present, counters readable) and copies it into a data
//! directory that has no store yet.

use std::path::{Path, PathBuf};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::codec::{EVENTS, HISTORY, LATEST, META};
use super::{DB_FILE_NAME, backend, read};
use crate::{Result, Revision, StorageError};

/// What a snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The store's revision at the snapshot.
    pub revision: Revision,
    /// The compacted revision at the snapshot.
    pub compacted: Revision,
    /// Live keys.
    pub keys: u64,
    /// Size of the snapshot file in bytes.
    pub bytes: u64,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Backend(format!("{what} {}: {e}", path.display()))
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Copies every table of `txn` into a new database at `dest` (see the module docs).
pub(crate) fn write(txn: &ReadTransaction, dest: &Path) -> Result<SnapshotInfo> {
    let tmp = partial_path(dest);
    let _ = std::fs::remove_file(&tmp);
    let (revision, compacted) = read::revisions(txn)?;
    let keys;
    {
        let db = Database::create(&tmp).map_err(backend)?;
        let out = db.begin_write().map_err(backend)?;
        {
            let mut meta = out.open_table(META).map_err(backend)?;
            for row in txn
                .open_table(META)
                .map_err(backend)?
                .iter()
                .map_err(backend)?
            {
                let (k, v) = row.map_err(backend)?;
                meta.insert(k.value(), v.value()).map_err(backend)?;
            }
            let src = txn.open_table(LATEST).map_err(backend)?;
            keys = src.len().map_err(backend)?;
            let mut latest = out.open_table(LATEST).map_err(backend)?;
            for row in src.iter().map_err(backend)? {
                let (k, v) = row.map_err(backend)?;
                latest.insert(k.value(), v.value()).map_err(backend)?;
            }
            let mut history = out.open_table(HISTORY).map_err(backend)?;
            for row in txn
                .open_table(HISTORY)
                .map_err(backend)?
                .iter()
                .map_err(backend)?
            {
                let (k, v) = row.map_err(backend)?;
                history.insert(k.value(), v.value()).map_err(backend)?;
            }
            let mut events = out.open_table(EVENTS).map_err(backend)?;
            for row in txn
                .open_table(EVENTS)
                .map_err(backend)?
                .iter()
                .map_err(backend)?
            {
                let (k, v) = row.map_err(backend)?;
                events.insert(k.value(), v.value()).map_err(backend)?;
            }
        }
        out.commit().map_err(backend)?;
    }
    std::fs::rename(&tmp, dest).map_err(|e| io("renaming the snapshot to", dest, e))?;
    let bytes = std::fs::metadata(dest)
        .map_err(|e| io("reading", dest, e))?
        .len();
    Ok(SnapshotInfo {
        revision,
        compacted,
        keys,
        bytes,
    })
}

/// Opens a snapshot (or store) file and reads what it holds; fails unless it is one.
pub fn inspect(file: &Path) -> Result<SnapshotInfo> {
    let db = Database::open(file).map_err(|e| {
        StorageError::Backend(format!(
            "{} is not a ferrokube snapshot: {}",
            file.display(),
            redb::Error::from(e)
        ))
    })?;
    let txn = db.begin_read().map_err(backend)?;
    let (revision, compacted) = read::revisions(&txn)?;
    let keys = txn
        .open_table(LATEST)
        .map_err(backend)?
        .len()
        .map_err(backend)?;
    txn.open_table(HISTORY).map_err(backend)?;
    txn.open_table(EVENTS).map_err(backend)?;
    let bytes = std::fs::metadata(file)
        .map_err(|e| io("reading", file, e))?
        .len();
    Ok(SnapshotInfo {
        revision,
        compacted,
        keys,
        bytes,
    })
}

/// Takes a snapshot of the store file at `db_file` when no process has it open (an offline
/// store); fails with a message naming the lock when a server runs on it. The write-ahead log
/// beside the file is replayed into it first (what the server's next start would do), so the
/// snapshot holds every acknowledged write.
pub fn save_offline(db_file: &Path, dest: &Path) -> Result<SnapshotInfo> {
    let db = Database::open(db_file).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StorageError::Unavailable(format!(
            "{} is open in another process (a running server)",
            db_file.display()
        )),
        e => StorageError::Backend(format!(
            "opening {}: {}",
            db_file.display(),
            redb::Error::from(e)
        )),
    })?;
    let (current, _) = read::revisions(&db.begin_read().map_err(backend)?)?;
    let dir = db_file.parent().unwrap_or(Path::new("."));
    super::recover_wal(&db, dir, true, current)?;
    let txn = db.begin_read().map_err(backend)?;
    write(&txn, dest)
}

/// Restores `file` as the store of data directory `data_dir` (`DATA_DIR/db/ferrokube.redb`,
/// the directory `ferrokube server --data-dir` uses). Refuses to overwrite an existing store.
pub fn restore(file: &Path, data_dir: &Path) -> Result<SnapshotInfo> {
    let info = inspect(file)?;
    let db_dir = data_dir.join("db");
    let dest = db_dir.join(DB_FILE_NAME);
    if dest.exists() {
        return Err(StorageError::AlreadyExists {
            key: dest.display().to_string(),
        });
    }
    std::fs::create_dir_all(&db_dir).map_err(|e| io("creating", &db_dir, e))?;
    let tmp = partial_path(&dest);
    std::fs::copy(file, &tmp).map_err(|e| io("copying the snapshot to", &tmp, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("syncing", &tmp, e))?;
    // A log left in the directory belongs to a store that is gone: never replay it over the
    // snapshot.
    super::remove_wal(&db_dir)?;
    std::fs::rename(&tmp, &dest).map_err(|e| io("renaming to", &dest, e))?;
    Ok(info)
}
