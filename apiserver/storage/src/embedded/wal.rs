//! The embedded store's write-ahead log: what makes a group commit durable.
//!
//! A batch of writes is applied to redb in one write transaction committed with
//! `Durability::None` (no fsync, no allocator-state save: the pages stay in redb's write
//! buffer), and made durable by ONE frame appended to `ferrokube.wal` and `fdatasync`ed
//! before that commit (so no reader ever sees a write that is not durable). Every
//! `checkpoint` (WAL past [`EmbeddedOptions::wal_bytes`](super::EmbeddedOptions), every
//! `checkpoint_interval`, before compaction and reclamation, on close) is one durable redb
//! commit, after which the log starts again at offset 0. Opening the store replays the
//! frames redb does not have yet (after `kill -9`) in one durable commit.
//!
//! Why: a durable redb commit (quick-repair's allocator state, two-phase header, two
//! fsyncs) wrote ~70 KB and cost ~2 flushes for every batch, also for one Lease renewal.
//!
//! The file is emptied when the store opens and then reused: it grows in 1 MiB steps
//! (`set_len`), so after the first round a frame overwrites allocated blocks and `fdatasync`
//! flushes data only (no metadata journal commit). Frames are written one page at a time:
//! the kernel sizes a page-cache folio by the write that creates it, and `fdatasync` writes
//! whole dirty folios, so one large write would make every later small frame in its range
//! cost up to a MiB of disk writes (seen: 1 MiB per Lease renewal on Linux 6.18 ext4).
//! Stale frames of earlier rounds stay behind the current ones; replay tells them apart
//! because every frame must continue the previous one's revisions, and a stale frame only
//! holds revisions at or below the checkpoint that ended its round.
//!
//! Frame: `[magic u32][payload len u32][crc32 u32][first revision i64][records u32]`, then
//! per record `[key len u32][key][version len u32][version]` (the `history` encoding of
//! `codec::Version`); all little-endian, the checksum over everything after it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::codec::Version;
use crate::Revision;

/// The log inside the store's directory, beside the database file.
pub const WAL_FILE_NAME: &str = "ferrokube.wal";

const MAGIC: u32 = 0x314c_5746; // "FWL1"
/// magic, payload length, checksum, first revision, record count.
const HEADER: usize = 4 + 4 + 4 + 8 + 4;
/// The file grows by this much at a time.
const GROW: u64 = 1 << 20;
/// Frames are written in pieces that do not cross these boundaries (the page size).
const PAGE: u64 = 4096;

/// One write replayed from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub key: String,
    pub revision: Revision,
    pub version: Version,
}

/// The open log (owned by the writer thread).
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    /// Where the next frame goes (0 right after a checkpoint).
    offset: u64,
    /// Bytes the file has (zeros or stale frames past `offset`).
    len: u64,
    /// The frame being built: header space, then records.
    frame: Vec<u8>,
    records: u32,
    first: Revision,
    /// When the first frame after the last checkpoint was written.
    since: Option<Instant>,
    /// The checkpoint threshold: a file grown past twice this by one huge batch is cut back
    /// at the next checkpoint.
    limit: u64,
}

impl Wal {
    /// Opens (or creates, mode 0600) the log in `dir`, emptied: call after `replay_wal` has
    /// made everything it held durable in redb (emptying also drops the page cache the replay
    /// read it into). `limit`: the checkpoint threshold in bytes.
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<Wal> {
        let path = dir.join(WAL_FILE_NAME);
        let file = super::open_private_file(&path)?;
        file.set_len(0)?;
        Ok(Wal {
            file,
            path,
            offset: 0,
            len: 0,
            frame: Vec::new(),
            records: 0,
            first: 0,
            since: None,
            limit: limit.div_ceil(GROW) * GROW,
        })
    }

    /// Adds the write of `key` at `revision` (`version`: its `history` encoding) to the
    /// frame being built. Revisions of one frame are consecutive.
    pub fn push(&mut self, key: &str, revision: Revision, version: &[u8]) {
        if self.records == 0 {
            self.frame.clear();
            self.frame.resize(HEADER, 0);
            self.first = revision;
        }
        debug_assert_eq!(revision, self.first + i64::from(self.records));
        self.records += 1;
        put_bytes(&mut self.frame, key.as_bytes());
        put_bytes(&mut self.frame, version);
    }

    /// Drops the frame being built (its batch was not committed).
    pub fn discard(&mut self) {
        self.records = 0;
    }

    /// Writes the frame being built and waits until it is on disk. On success the frame is
    /// part of the log; on failure nothing after `offset` is trusted (the next frame
    /// overwrites it).
    pub fn write_frame(&mut self) -> std::io::Result<Option<u64>> {
        if self.records == 0 {
            return Ok(None);
        }
        let payload = (self.frame.len() - HEADER) as u32;
        self.frame[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        self.frame[4..8].copy_from_slice(&payload.to_le_bytes());
        self.frame[12..20].copy_from_slice(&self.first.to_le_bytes());
        self.frame[20..24].copy_from_slice(&self.records.to_le_bytes());
        let crc = crc32fast::hash(&self.frame[12..]);
        self.frame[8..12].copy_from_slice(&crc.to_le_bytes());
        self.records = 0;
        let start = self.offset;
        let end = start + self.frame.len() as u64;
        if end > self.len {
            let grown = end.div_ceil(GROW) * GROW;
            self.file.set_len(grown)?;
            self.len = grown;
        }
        let (mut at, mut rest) = (start, &self.frame[..]);
        while !rest.is_empty() {
            let n = ((PAGE - at % PAGE) as usize).min(rest.len());
            self.file.write_all_at(&rest[..n], at)?;
            (at, rest) = (at + n as u64, &rest[n..]);
        }
        if self.frame.capacity() > 2 * GROW as usize {
            // One huge batch: do not keep its buffer.
            self.frame = Vec::new();
        }
        self.file.sync_data()?;
        self.offset = end;
        self.since.get_or_insert_with(Instant::now);
        Ok(Some(start))
    }

    /// Forgets the frame written at `start` (its redb commit failed): the next frame
    /// overwrites it.
    pub fn rewind(&mut self, start: u64) {
        self.offset = start;
    }

    /// Bytes of frames since the last checkpoint.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// When the first frame since the last checkpoint was written.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// After a durable redb commit: everything logged so far is in the database file.
    pub fn checkpointed(&mut self) {
        self.offset = 0;
        self.since = None;
        if self.len > 2 * self.limit && self.file.set_len(self.limit).is_ok() {
            self.len = self.limit;
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The records of the log at `path` that continue one another, from its start: stops at the
/// first frame that is torn, zero, stale or malformed. A missing file is an empty log.
pub(crate) fn read(path: &Path) -> std::io::Result<Vec<Record>> {
    let raw = match std::fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(parse(&raw))
}

fn parse(raw: &[u8]) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut at = 0usize;
    while let Some(frame) = parse_frame(raw, at) {
        let (records, next) = frame;
        let continues = match (out.last(), records.first()) {
            (Some(last), Some(first)) => first.revision == last.revision + 1,
            _ => true,
        };
        if !continues || records.is_empty() {
            break;
        }
        out.extend(records);
        at = next;
    }
    out
}

/// The frame at `at` and where the next one starts, or None.
fn parse_frame(raw: &[u8], at: usize) -> Option<(Vec<Record>, usize)> {
    let header = raw.get(at..at.checked_add(HEADER)?)?;
    if u32_at(header, 0)? != MAGIC {
        return None;
    }
    let payload = u32_at(header, 4)? as usize;
    let end = at.checked_add(HEADER)?.checked_add(payload)?;
    let body = raw.get(at + 12..end)?;
    if crc32fast::hash(body) != u32_at(header, 8)? {
        return None;
    }
    let first = i64::from_le_bytes(header[12..20].try_into().ok()?);
    let count = u32_at(header, 20)?;
    let mut records = Vec::with_capacity(count.min(1 << 16) as usize);
    let mut p = at + HEADER;
    for i in 0..count {
        let klen = u32_at(raw, p)? as usize;
        let key = std::str::from_utf8(raw.get(p + 4..(p + 4).checked_add(klen)?)?).ok()?;
        p += 4 + klen;
        let vlen = u32_at(raw, p)? as usize;
        let vraw = raw.get(p + 4..(p + 4).checked_add(vlen)?)?;
        p += 4 + vlen;
        if p > end {
            return None;
        }
        records.push(Record {
            key: key.to_owned(),
            revision: first + i64::from(i),
            version: Version::decode(vraw)?,
        });
    }
    (p == end).then_some((records, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn version(value: &[u8], tombstone: bool) -> Version {
        Version {
            tombstone,
            create_revision: 2,
            prev_mod_revision: 1,
            value: Bytes::copy_from_slice(value),
        }
    }

    fn frame(wal: &mut Wal, first: Revision, n: i64) {
        for i in 0..n {
            let v = version(b"v", i == 1).encode();
            wal.push(&format!("/k/{}", first + i), first + i, &v);
        }
        wal.write_frame().expect("write");
    }

    #[test]
    fn frames_round_trip_and_stale_rounds_are_not_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), 8 << 20).expect("open");
        frame(&mut wal, 10, 3);
        frame(&mut wal, 13, 2);
        frame(&mut wal, 15, 4);
        let got = read(wal.path()).expect("read");
        assert_eq!(
            got.iter().map(|r| r.revision).collect::<Vec<_>>(),
            (10..19).collect::<Vec<_>>()
        );
        assert_eq!(got[1].version, version(b"v", true));
        assert_eq!(got[1].key, "/k/11");
        // A checkpoint, then a shorter round: the old frames behind it are not continued.
        wal.checkpointed();
        frame(&mut wal, 19, 1);
        let got = read(wal.path()).expect("read");
        assert_eq!(got.iter().map(|r| r.revision).collect::<Vec<_>>(), [19]);
    }

    #[test]
    fn a_torn_or_corrupt_frame_ends_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), 8 << 20).expect("open");
        frame(&mut wal, 1, 2);
        let second = wal.bytes();
        frame(&mut wal, 3, 2);
        let mut raw = std::fs::read(wal.path()).expect("read");
        assert_eq!(parse(&raw).len(), 4);
        // One flipped byte in the second frame's payload: only the first frame counts.
        raw[second as usize + HEADER + 2] ^= 0xff;
        assert_eq!(parse(&raw).len(), 2);
        // Cut in the middle of the second frame (a torn write).
        let cut = &std::fs::read(wal.path()).expect("read")[..second as usize + HEADER + 3];
        assert_eq!(parse(cut).len(), 2);
        // Zeros (a fresh file) and garbage are empty logs.
        assert!(parse(&[0u8; 4096]).is_empty());
        assert!(parse(b"not a log at all, not at all").is_empty());
    }

    #[test]
    fn the_file_grows_in_steps_and_is_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), 8 << 20).expect("open");
        frame(&mut wal, 1, 1);
        let len = std::fs::metadata(wal.path()).expect("stat").len();
        assert_eq!(len, GROW);
        wal.checkpointed();
        frame(&mut wal, 2, 1);
        assert_eq!(std::fs::metadata(wal.path()).expect("stat").len(), len);
        assert_eq!(wal.bytes() as usize, HEADER + 4 + 4 + 4 + 18);
    }
}
