//! The on-disk write-ahead log: Raft's hard state, entries and snapshots in
//! a data directory, behind the same `Storage` trait as the simulator's
//! model.
//!
//! Layout (see docs/deploy.md, "Storage"):
//!
//! ```text
//! <dir>/snapshot                  the latest checkpoint: one framed record
//! <dir>/snapshot.tmp              a checkpoint being written; removed at open
//! <dir>/00000000000000000001.wal  log segments, replayed in number order
//! ```
//!
//! Writes are kept in memory until `sync`, which appends them all as framed
//! records to the current segment with one `write` and one fdatasync (group
//! commit). A snapshot writes a checkpoint of the whole stable image (hard
//! state, snapshot, the entries after it) to `snapshot.tmp`, fsyncs it,
//! renames it over `snapshot`, fsyncs the directory, and then removes the
//! segments the checkpoint covers.

mod record;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::replicated::{Entry, Snapshot};
use crate::storage::{Persisted, Storage, Write};
use crate::trace::NodeId;

const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const SEGMENT_EXT: &str = "wal";
const LOCK: &str = "LOCK";

/// Size limits of the log.
#[derive(Clone, Copy, Debug)]
pub struct WalLimits {
    /// A segment is closed and a new one started once a batch would take it
    /// past this many bytes (a single larger batch gets a segment of its own).
    pub segment_bytes: u64,
    /// The largest log record payload: one hard-state change or one splice.
    pub max_record_bytes: usize,
    /// The largest checkpoint payload (the snapshot and the entries after it).
    pub max_snapshot_bytes: usize,
}

impl Default for WalLimits {
    fn default() -> Self {
        WalLimits {
            segment_bytes: 64 << 20,
            max_record_bytes: 4 << 20,
            max_snapshot_bytes: 1 << 30,
        }
    }
}

/// What the log has done, for reports such as fsyncs per committed entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// `sync` calls that had something to write.
    pub syncs: u64,
    /// fdatasync/fsync calls on files and the directory.
    pub fsyncs: u64,
    /// Log records appended.
    pub records: u64,
    /// Entries carried by those records.
    pub entries: u64,
    /// Bytes appended to segments.
    pub bytes: u64,
    /// Checkpoints written.
    pub snapshots: u64,
}

/// Why the log cannot open or cannot go on.
#[derive(Debug)]
pub enum WalError {
    /// A file operation failed.
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// A record that was once synced is damaged: the node must not start
    /// (`distsync node` exits 2) until an operator restores the directory.
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A write too large for one record.
    RecordTooLarge {
        what: &'static str,
        bytes: usize,
        limit: usize,
    },
    /// An earlier failure stopped the log; every later sync is refused.
    Stopped,
    /// Another process holds the data directory: two nodes writing one log
    /// would destroy it.
    InUse { path: PathBuf },
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { path, op, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            WalError::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{} is corrupt at byte {offset}: {reason}; refusing to start (restore the data \
                 directory from a backup or rebuild this node from its peers)",
                path.display()
            ),
            WalError::RecordTooLarge { what, bytes, limit } => write!(
                f,
                "a {what} of {bytes} bytes exceeds the write-ahead log's limit of {limit} bytes"
            ),
            WalError::Stopped => write!(f, "the write-ahead log stopped after an earlier error"),
            WalError::InUse { path } => write!(
                f,
                "{} is locked by another running process: each node needs a data directory of its own",
                path.display()
            ),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> WalError {
    let path = path.to_path_buf();
    move |source| WalError::Io { path, op, source }
}

/// The snapshot file's payload: the whole stable image, and the first
/// segment not folded into it.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    first_segment: u64,
    state: Persisted,
}

/// A node's durable state in a data directory.
pub struct DiskLog {
    dir: PathBuf,
    limits: WalLimits,
    /// What is on disk as of the last sync (what a restart would read).
    stable: Persisted,
    pending: Vec<Write>,
    /// The segment appended to, its number and its length.
    segment: File,
    segment_no: u64,
    segment_len: u64,
    stats: WalStats,
    /// Set by the first failed sync. A failed fsync cannot be retried
    /// safely (the kernel may already have dropped the dirty pages), so the
    /// log stops and the runtime must stop the node before it sends.
    failure: Option<WalError>,
    /// Held open for its lock: the directory is this process's while it is.
    _lock: File,
}

impl DiskLog {
    /// Opens (creating if needed) the data directory and recovers from it:
    /// a torn last record is cut off, damage anywhere else is an error.
    pub fn open(dir: impl Into<PathBuf>, limits: WalLimits) -> Result<DiskLog, WalError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir, "create directory"))?;
        let lock = lock_dir(&dir)?;
        let tmp = dir.join(SNAPSHOT_TMP);
        if tmp.exists() {
            fs::remove_file(&tmp).map_err(io_err(&tmp, "remove"))?;
        }
        let (mut stable, first_segment) = read_checkpoint(&dir, &limits)?;
        let mut numbers = segment_numbers(&dir)?;
        // Segments a checkpoint covers may outlive it if a crash came
        // between the rename and their removal.
        for &n in numbers.iter().filter(|&&n| n < first_segment) {
            let path = segment_path(&dir, n);
            fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
        }
        numbers.retain(|&n| n >= first_segment);
        for (i, &n) in numbers.iter().enumerate() {
            let expected = first_segment + i as u64;
            if n != expected {
                return Err(WalError::Corrupt {
                    path: segment_path(&dir, expected),
                    offset: 0,
                    reason: format!("segment missing (found segment {n} after it)"),
                });
            }
            let last = i + 1 == numbers.len();
            replay_segment(&segment_path(&dir, n), last, &limits, &mut stable)?;
        }
        let segment_no = numbers.last().copied().unwrap_or(first_segment);
        let path = segment_path(&dir, segment_no);
        let segment = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path, "open"))?;
        let segment_len = segment.metadata().map_err(io_err(&path, "stat"))?.len();
        let mut log = DiskLog {
            dir,
            limits,
            stable,
            pending: Vec::new(),
            segment,
            segment_no,
            segment_len,
            stats: WalStats::default(),
            failure: None,
            _lock: lock,
        };
        if numbers.is_empty() {
            log.sync_dir()?;
        }
        Ok(log)
    }

    /// The stable state: after `open`, what the node recovers from.
    pub fn stable(&self) -> &Persisted {
        &self.stable
    }

    /// Counters since `open`.
    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// The error that stopped the log, if any. The runtime checks this after
    /// every input, before sending what the input produced.
    pub fn failure(&self) -> Option<&WalError> {
        self.failure.as_ref()
    }

    /// Makes every later sync fail as a dying disk's would.
    #[cfg(test)]
    pub(crate) fn fail_for_test(&mut self) {
        self.failure = Some(WalError::Io {
            path: PathBuf::from("test"),
            op: "fdatasync",
            source: io::Error::other("the test's disk failed"),
        });
    }

    /// Writes and syncs everything pending; the error also stops the log.
    pub fn try_sync(&mut self) -> Result<(), &WalError> {
        if self.failure.is_none()
            && let Err(e) = self.write_pending()
        {
            self.pending.clear();
            self.failure = Some(e);
        }
        self.failure.as_ref().map_or(Ok(()), Err)
    }

    fn write_pending(&mut self) -> Result<(), WalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.stats.syncs += 1;
        let mut batch = Vec::new();
        for w in std::mem::take(&mut self.pending) {
            match w {
                // Records before the snapshot are on disk before the
                // checkpoint that folds them in.
                Write::Snapshot { .. } => {
                    self.append(&mut batch)?;
                    self.stable.apply(w);
                    self.checkpoint()?;
                }
                Write::HardState { .. } | Write::Splice { .. } => {
                    if let Write::Splice { entries, .. } = &w {
                        self.stats.entries += entries.len() as u64;
                    }
                    self.encode(&mut batch, &w)?;
                    self.stable.apply(w);
                }
            }
        }
        self.append(&mut batch)
    }

    fn encode(&mut self, batch: &mut Vec<u8>, record: &Write) -> Result<(), WalError> {
        let payload = postcard::to_stdvec(record).expect("log records always serialize");
        if payload.len() > self.limits.max_record_bytes {
            return Err(WalError::RecordTooLarge {
                what: "log record",
                bytes: payload.len(),
                limit: self.limits.max_record_bytes,
            });
        }
        record::frame(batch, &payload);
        self.stats.records += 1;
        Ok(())
    }

    /// Appends a batch of framed records with one write and one fdatasync.
    fn append(&mut self, batch: &mut Vec<u8>) -> Result<(), WalError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.segment_len > 0 && self.segment_len + batch.len() as u64 > self.limits.segment_bytes
        {
            self.open_segment(self.segment_no + 1)?;
            self.sync_dir()?;
        }
        let path = segment_path(&self.dir, self.segment_no);
        self.segment
            .write_all(batch)
            .map_err(io_err(&path, "write"))?;
        self.segment
            .sync_data()
            .map_err(io_err(&path, "fdatasync"))?;
        self.stats.fsyncs += 1;
        self.stats.bytes += batch.len() as u64;
        self.segment_len += batch.len() as u64;
        batch.clear();
        Ok(())
    }

    fn open_segment(&mut self, n: u64) -> Result<(), WalError> {
        let path = segment_path(&self.dir, n);
        self.segment = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        self.segment_no = n;
        self.segment_len = 0;
        Ok(())
    }

    /// Writes the stable image as the new snapshot file and drops the
    /// segments it covers.
    fn checkpoint(&mut self) -> Result<(), WalError> {
        let first_segment = self.segment_no + 1;
        let payload = postcard::to_stdvec(&CheckpointRef {
            first_segment,
            state: &self.stable,
        })
        .expect("checkpoints always serialize");
        if payload.len() > self.limits.max_snapshot_bytes {
            return Err(WalError::RecordTooLarge {
                what: "snapshot",
                bytes: payload.len(),
                limit: self.limits.max_snapshot_bytes,
            });
        }
        let mut framed = Vec::with_capacity(record::HEADER + payload.len());
        record::frame(&mut framed, &payload);
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let mut file = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
        file.write_all(&framed).map_err(io_err(&tmp, "write"))?;
        file.sync_all().map_err(io_err(&tmp, "fsync"))?;
        self.stats.fsyncs += 1;
        // The new segment and the rename become durable with one directory
        // fsync; a crash before it leaves the old snapshot and its segments
        // (plus an empty segment, harmless), after it the new ones.
        self.open_segment(first_segment)?;
        let path = self.dir.join(SNAPSHOT);
        fs::rename(&tmp, &path).map_err(io_err(&path, "rename"))?;
        self.sync_dir()?;
        self.stats.snapshots += 1;
        for n in segment_numbers(&self.dir)? {
            if n < first_segment {
                let old = segment_path(&self.dir, n);
                fs::remove_file(&old).map_err(io_err(&old, "remove"))?;
            }
        }
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), WalError> {
        let dir = File::open(&self.dir).map_err(io_err(&self.dir, "open directory"))?;
        dir.sync_all()
            .map_err(io_err(&self.dir, "fsync directory"))?;
        self.stats.fsyncs += 1;
        Ok(())
    }
}

/// `Checkpoint` by reference, so writing one does not copy the image.
#[derive(Serialize)]
struct CheckpointRef<'a> {
    first_segment: u64,
    state: &'a Persisted,
}

impl Storage for DiskLog {
    fn set_hard_state(&mut self, term: u64, voted_for: Option<NodeId>) {
        self.pending.push(Write::HardState { term, voted_for });
    }

    fn splice(&mut self, from: u64, entries: &[Entry]) {
        self.pending.push(Write::Splice {
            from,
            entries: entries.to_vec(),
        });
    }

    fn snapshot(&mut self, snapshot: Snapshot, keep_suffix: bool) {
        self.pending.push(Write::Snapshot {
            snapshot,
            keep_suffix,
        });
    }

    /// Really fdatasyncs; on failure the log stops (see `failure`).
    fn sync(&mut self) {
        let _ = self.try_sync();
    }
}

/// Takes the data directory's lock file (`LOCK`, an advisory `flock`
/// released when the process exits, however it exits).
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path, "open"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is shared.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if taken {
        return Ok(file);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Err(WalError::InUse {
            path: dir.to_path_buf(),
        })
    } else {
        Err(io_err(&path, "lock")(err))
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.{SEGMENT_EXT}"))
}

/// The numbers of the segment files in `dir`, ascending.
fn segment_numbers(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let entry = entry.map_err(io_err(dir, "list"))?;
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|s| s.strip_suffix(SEGMENT_EXT)?.strip_suffix('.'))
        else {
            continue;
        };
        if let Ok(n) = stem.parse::<u64>() {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The snapshot file's image and first segment; an empty image and
/// segment 1 without one. The file was fsynced before it was renamed into
/// place, so any damage is corruption.
fn read_checkpoint(dir: &Path, limits: &WalLimits) -> Result<(Persisted, u64), WalError> {
    let path = dir.join(SNAPSHOT);
    let buf = match fs::read(&path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Persisted::default(), 1)),
        Err(e) => return Err(io_err(&path, "read")(e)),
    };
    let corrupt = |reason: String| WalError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason,
    };
    let limit = limits.max_snapshot_bytes;
    let payload = record::record_at(&buf, 0, limit).map_err(|d| corrupt(d.describe(limit)))?;
    if record::HEADER + payload.len() != buf.len() {
        return Err(corrupt("bytes after the snapshot record".into()));
    }
    let c: Checkpoint =
        postcard::from_bytes(payload).map_err(|e| corrupt(format!("undecodable: {e}")))?;
    Ok((c.state, c.first_segment))
}

/// Applies one segment's records to `stable`. In the last segment a torn
/// tail is cut off (and the cut made durable); any other damage is an error
/// naming the file and the damaged record's offset.
fn replay_segment(
    path: &Path,
    last: bool,
    limits: &WalLimits,
    stable: &mut Persisted,
) -> Result<(), WalError> {
    let buf = fs::read(path).map_err(io_err(path, "read"))?;
    let limit = limits.max_record_bytes;
    let mut at = 0;
    while at < buf.len() {
        let payload = match record::record_at(&buf, at, limit) {
            Ok(payload) => payload,
            Err(damage) if last && record::is_torn_tail(&buf, at, damage, limit) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path, "open"))?;
                file.set_len(at as u64).map_err(io_err(path, "truncate"))?;
                file.sync_data().map_err(io_err(path, "fdatasync"))?;
                return Ok(());
            }
            Err(damage) => {
                return Err(WalError::Corrupt {
                    path: path.to_path_buf(),
                    offset: at as u64,
                    reason: damage.describe(limit),
                });
            }
        };
        let corrupt = |reason: String| WalError::Corrupt {
            path: path.to_path_buf(),
            offset: at as u64,
            reason,
        };
        let record: Write = postcard::from_bytes(payload).map_err(|e| {
            corrupt(format!(
                "record checksum matches but it does not decode: {e}"
            ))
        })?;
        // Snapshots go to their own file, never into a segment.
        if let Write::Snapshot { .. } = record {
            return Err(corrupt("a snapshot record inside a segment".into()));
        }
        stable.apply(record);
        at += record::HEADER + payload.len();
    }
    Ok(())
}
