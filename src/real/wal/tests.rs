use std::rc::Rc;

use super::*;
use crate::lock::{LockCommand, Mode};
use crate::queue::placement::{Placement, RingCommand};
use crate::real::temp_dir::TempDir;
use crate::replicated::{Command, Replicated};

fn entry(term: u64, i: u64) -> Entry {
    let cmd = match i % 4 {
        0 => Command::Noop,
        1 => Command::Put {
            client: i as u32,
            seq: i,
            key: 7,
            value: i * 31,
        },
        2 => Command::Lock(LockCommand::Acquire {
            client: 1,
            seq: i,
            session: 3,
            lock: 9,
            mode: Mode::Shared,
            wait: true,
        }),
        _ => Command::Ring(RingCommand::Moved {
            partition: 2,
            epoch: i,
        }),
    };
    Entry { term, cmd }
}

fn snapshot_at(index: u64, term: u64) -> Snapshot {
    let mut data = Replicated {
        queue: Placement::new(&[0, 1, 2], 8, 16),
        ..Replicated::default()
    };
    for i in 1..=index {
        data.apply(i, &entry(term, i).cmd);
    }
    Snapshot {
        index,
        term,
        data: Rc::new(data),
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn open(dir: &Path) -> DiskLog {
    DiskLog::open(dir, WalLimits::default()).expect("open")
}

#[test]
fn a_reopened_log_reads_back_what_was_synced_and_nothing_unsynced() {
    let tmp = TempDir::new("reopen");
    let mut log = open(&tmp.0);
    log.set_hard_state(1, Some(2));
    log.splice(1, &[entry(1, 1), entry(1, 2), entry(1, 3)]);
    log.sync();
    log.set_hard_state(2, None);
    log.splice(3, &[entry(2, 3)]);
    log.sync();
    let synced = log.stable().clone();
    assert_eq!(synced.term, 2);
    assert_eq!(synced.log, vec![entry(1, 1), entry(1, 2), entry(2, 3)]);
    // Recorded but never synced: a crash loses it.
    log.splice(4, &[entry(2, 4)]);
    drop(log);
    assert_eq!(open(&tmp.0).stable(), &synced);
}

#[test]
fn one_sync_writes_every_pending_record_with_one_fdatasync() {
    let tmp = TempDir::new("group");
    let mut log = open(&tmp.0);
    let before = log.stats();
    log.set_hard_state(3, Some(1));
    for i in 1..=50 {
        log.splice(i, &[entry(3, i)]);
    }
    log.sync();
    log.sync(); // nothing pending: no fsync
    let s = log.stats();
    assert_eq!(s.fsyncs - before.fsyncs, 1);
    assert_eq!((s.syncs, s.records, s.entries), (1, 51, 50));
    drop(log);
    assert_eq!(open(&tmp.0).stable().log.len(), 50);
}

#[test]
fn segments_roll_over_at_their_size_limit_and_replay_in_order() {
    let tmp = TempDir::new("segments");
    let limits = WalLimits {
        segment_bytes: 200,
        ..WalLimits::default()
    };
    let mut log = DiskLog::open(&tmp.0, limits).unwrap();
    for i in 1..=40 {
        log.splice(i, &[entry(1, i)]);
        log.sync();
    }
    let segments = segment_numbers(&tmp.0).unwrap();
    assert!(segments.len() > 3, "{segments:?}");
    for n in &segments[..segments.len() - 1] {
        let len = fs::metadata(segment_path(&tmp.0, *n)).unwrap().len();
        assert!(len <= 200, "segment {n} has {len} bytes");
    }
    let stable = log.stable().clone();
    drop(log);
    assert_eq!(DiskLog::open(&tmp.0, limits).unwrap().stable(), &stable);
}

#[test]
fn a_snapshot_replaces_the_segments_it_covers() {
    let tmp = TempDir::new("snapshot");
    let limits = WalLimits {
        segment_bytes: 150,
        ..WalLimits::default()
    };
    let mut log = DiskLog::open(&tmp.0, limits).unwrap();
    log.set_hard_state(4, Some(0));
    for i in 1..=30 {
        log.splice(i, &[entry(4, i)]);
        log.sync();
    }
    // Entries after the snapshot and in the same sync survive it.
    log.snapshot(snapshot_at(20, 4), true);
    log.splice(31, &[entry(4, 31)]);
    log.sync();
    let stable = log.stable().clone();
    assert_eq!(stable.snapshot_index(), 20);
    assert_eq!(stable.last_index(), 31);
    assert_eq!(segment_numbers(&tmp.0).unwrap().len(), 1);
    drop(log);
    // A checkpoint left half-written by a crash is ignored and removed.
    fs::write(tmp.0.join(SNAPSHOT_TMP), b"half a checkpoint").unwrap();
    let log = DiskLog::open(&tmp.0, limits).unwrap();
    assert_eq!(log.stable(), &stable);
    assert!(!tmp.0.join(SNAPSHOT_TMP).exists());
}

#[test]
fn segments_a_checkpoint_covers_are_removed_at_open() {
    let tmp = TempDir::new("leftover");
    let mut log = open(&tmp.0);
    log.splice(1, &[entry(1, 1), entry(1, 2)]);
    log.sync();
    let old = files(&tmp.0);
    log.snapshot(snapshot_at(2, 1), true);
    log.sync();
    let stable = log.stable().clone();
    drop(log);
    // A crash between the rename and the removal leaves the old segment.
    for (name, bytes) in old.iter().filter(|(n, _)| n.ends_with(".wal")) {
        fs::write(tmp.0.join(name), bytes).unwrap();
    }
    assert_eq!(open(&tmp.0).stable(), &stable);
    assert_eq!(segment_numbers(&tmp.0).unwrap(), vec![2]);
}

#[test]
fn a_record_over_the_limit_stops_the_log_with_a_clear_error() {
    let tmp = TempDir::new("too-large");
    let limits = WalLimits {
        max_record_bytes: 64,
        ..WalLimits::default()
    };
    let mut log = DiskLog::open(&tmp.0, limits).unwrap();
    let many: Vec<Entry> = (1..=20).map(|i| entry(1, i)).collect();
    log.splice(1, &many);
    let err = log.try_sync().unwrap_err().to_string();
    assert!(
        err.contains("exceeds the write-ahead log's limit of 64 bytes"),
        "{err}"
    );
    log.splice(1, &[entry(1, 1)]);
    log.sync();
    assert!(matches!(
        log.failure(),
        Some(WalError::RecordTooLarge { .. })
    ));
    assert!(log.stable().log.is_empty());
}

#[test]
fn a_damaged_snapshot_file_refuses_to_start() {
    let tmp = TempDir::new("bad-snapshot");
    let mut log = open(&tmp.0);
    log.splice(1, &[entry(1, 1)]);
    log.snapshot(snapshot_at(1, 1), true);
    log.sync();
    drop(log);
    let path = tmp.0.join(SNAPSHOT);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    fs::write(&path, bytes).unwrap();
    match DiskLog::open(&tmp.0, WalLimits::default()) {
        Err(WalError::Corrupt {
            path: p, offset, ..
        }) => assert_eq!((p, offset), (path, 0)),
        other => panic!(
            "expected corruption, got {:?}",
            other.map(|l| l.stable().clone())
        ),
    }
}

/// A log written one record per sync, with the stable image after each
/// sync and the segment length after it.
struct History {
    files: Vec<(String, Vec<u8>)>,
    segment: String,
    /// (segment length, stable image) after each sync, oldest first.
    synced: Vec<(usize, Persisted)>,
}

/// Seven syncs of one record each, after a snapshot so the recovered image
/// also has a checkpoint under it.
fn history(tmp: &TempDir) -> History {
    let dir = tmp.0.join("source");
    let mut log = open(&dir);
    log.set_hard_state(1, Some(1));
    log.splice(1, &[entry(1, 1), entry(1, 2)]);
    log.snapshot(snapshot_at(2, 1), true);
    log.sync();
    let segment = format!("{:020}.{SEGMENT_EXT}", log.segment_no);
    let mut synced = vec![(0, log.stable().clone())];
    for i in 3..=9 {
        if i == 6 {
            log.set_hard_state(2, None);
        } else {
            // Entry 8 overwrites 7: a splice that truncates.
            let from = if i == 8 { 7 } else { i };
            log.splice(from, &[entry(i / 3, i)]);
        }
        log.sync();
        synced.push((log.segment_len as usize, log.stable().clone()));
    }
    let files = files(&dir);
    History {
        files,
        segment,
        synced,
    }
}

/// The files with the segment replaced by `bytes`.
fn with_segment(h: &History, bytes: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    let mut out = h.files.clone();
    out.iter_mut().find(|(n, _)| *n == h.segment).unwrap().1 = bytes;
    out
}

/// The synced image whose records all lie within the first `len` bytes.
fn synced_within(h: &History, len: usize) -> &Persisted {
    &h.synced
        .iter()
        .rev()
        .find(|(end, _)| *end <= len)
        .unwrap()
        .1
}

#[test]
fn a_torn_tail_at_every_byte_of_the_last_records_keeps_exactly_the_synced_prefix() {
    let tmp = TempDir::new("torn");
    let h = history(&tmp);
    let full = h
        .files
        .iter()
        .find(|(n, _)| *n == h.segment)
        .unwrap()
        .1
        .clone();
    let start = h.synced[h.synced.len() - 4].0;
    for cut in start..=full.len() {
        // Cut short, and cut short with the rest of the file zero-filled
        // (the size reached the disk, the data did not).
        // Zeroing bytes that were zero already changes nothing, so the
        // zeroed file still holds the original up to `same`.
        let mut zeroed = full.clone();
        zeroed[cut..].fill(0);
        let same = cut + full[cut..].iter().take_while(|&&b| b == 0).count();
        for (kind, bytes, intact) in [("cut", full[..cut].to_vec(), cut), ("zeroed", zeroed, same)]
        {
            let dir = tmp.with_files("torn", &with_segment(&h, bytes));
            let mut log = DiskLog::open(&dir, WalLimits::default())
                .unwrap_or_else(|e| panic!("{kind} at {cut}: {e}"));
            let want = synced_within(&h, intact);
            assert_eq!(log.stable(), want, "{kind} at {cut}");
            let kept = fs::metadata(dir.join(&h.segment)).unwrap().len() as usize;
            assert!(
                kept <= intact,
                "{kind} at {cut}: torn bytes left in the file"
            );
            // The log goes on from the cut: a new record survives a reopen.
            let next = want.last_index() + 1;
            log.splice(next, &[entry(9, next)]);
            log.sync();
            let after = log.stable().clone();
            drop(log);
            assert_eq!(
                open(&dir).stable(),
                &after,
                "{kind} at {cut}: append after recovery"
            );
        }
    }
}

#[test]
fn damage_at_every_byte_of_the_last_records_is_cut_off_only_at_the_tail() {
    let tmp = TempDir::new("corrupt");
    let h = history(&tmp);
    let full = h
        .files
        .iter()
        .find(|(n, _)| *n == h.segment)
        .unwrap()
        .1
        .clone();
    let n = h.synced.len();
    let last_start = h.synced[n - 2].0;
    for at in h.synced[n - 4].0..full.len() {
        let mut bytes = full.clone();
        bytes[at] ^= 0x5a;
        let dir = tmp.with_files("corrupt", &with_segment(&h, bytes));
        let result = DiskLog::open(&dir, WalLimits::default());
        if at >= last_start {
            // The last record: indistinguishable from a torn append.
            let log = result.unwrap_or_else(|e| panic!("flip at {at}: {e}"));
            assert_eq!(log.stable(), &h.synced[n - 2].1, "flip at {at}");
        } else {
            // A damaged record with an intact one after it: refuse, and say
            // where the damaged record starts.
            let record_start = h.synced.iter().rev().find(|(end, _)| *end <= at).unwrap().0;
            match result {
                Err(WalError::Corrupt { path, offset, .. }) => {
                    assert_eq!(path, dir.join(&h.segment), "flip at {at}");
                    assert_eq!(offset, record_start as u64, "flip at {at}");
                }
                Err(e) => panic!("flip at {at}: wrong error {e}"),
                Ok(log) => panic!(
                    "flip at {at}: opened with {} entries instead of refusing",
                    log.stable().last_index()
                ),
            }
        }
    }
}

#[test]
fn damage_in_an_earlier_segment_refuses_to_start_even_at_its_end() {
    let tmp = TempDir::new("earlier-segment");
    let limits = WalLimits {
        segment_bytes: 100,
        ..WalLimits::default()
    };
    let mut log = DiskLog::open(&tmp.0, limits).unwrap();
    for i in 1..=20 {
        log.splice(i, &[entry(1, i)]);
        log.sync();
    }
    drop(log);
    let first = segment_path(&tmp.0, 1);
    let mut bytes = fs::read(&first).unwrap();
    let end = bytes.len() - 1;
    bytes[end] ^= 1;
    fs::write(&first, bytes).unwrap();
    match DiskLog::open(&tmp.0, limits) {
        Err(WalError::Corrupt { path, .. }) => assert_eq!(path, first),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened over a damaged segment"),
    }
    let err = DiskLog::open(&tmp.0, limits).err().unwrap().to_string();
    assert!(
        err.contains("is corrupt at byte") && err.contains("refusing to start"),
        "{err}"
    );
}

#[test]
fn a_small_entry_takes_about_ten_bytes() {
    let e = Entry {
        term: 3,
        cmd: Command::Put {
            client: 2,
            seq: 40,
            key: 7,
            value: 1000,
        },
    };
    let bytes = postcard::to_stdvec(&e).unwrap();
    assert!(bytes.len() <= 10, "{} bytes", bytes.len());
}

#[test]
fn a_snapshot_record_inside_a_segment_refuses_to_start() {
    let tmp = TempDir::new("snapshot-in-segment");
    let mut log = open(&tmp.0);
    log.splice(1, &[entry(1, 1)]);
    log.sync();
    drop(log);
    // A well-framed record that decodes, but of the kind that only ever
    // goes to the snapshot file, followed by an intact record.
    let segment = segment_path(&tmp.0, segment_numbers(&tmp.0).unwrap()[0]);
    let mut bytes = fs::read(&segment).unwrap();
    let at = bytes.len();
    let snapshot = Write::Snapshot {
        snapshot: snapshot_at(1, 1),
        keep_suffix: false,
    };
    record::frame(&mut bytes, &postcard::to_allocvec(&snapshot).unwrap());
    let after = Write::HardState {
        term: 2,
        voted_for: None,
    };
    record::frame(&mut bytes, &postcard::to_allocvec(&after).unwrap());
    fs::write(&segment, &bytes).unwrap();
    match DiskLog::open(&tmp.0, WalLimits::default()) {
        Err(WalError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, segment);
            assert_eq!(offset, at as u64);
            assert!(
                reason.contains("snapshot record inside a segment"),
                "{reason}"
            );
        }
        Err(e) => panic!("expected a located corruption, got {e}"),
        Ok(_) => panic!("a snapshot record inside a segment must refuse to start"),
    }
}

#[test]
fn a_data_directory_in_use_is_refused_until_its_holder_lets_go() {
    let tmp = TempDir::new("in-use");
    let first = open(&tmp.0);
    match DiskLog::open(&tmp.0, WalLimits::default()) {
        Err(WalError::InUse { path }) => assert_eq!(path, tmp.0),
        Err(e) => panic!("expected InUse, got {e}"),
        Ok(_) => panic!("two logs on one directory"),
    }
    drop(first);
    assert!(DiskLog::open(&tmp.0, WalLimits::default()).is_ok());
}
