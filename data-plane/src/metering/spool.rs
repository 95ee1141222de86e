//! Durable, append-only local spool of usage records.
//!
//! Billing must survive a `kill -9` of the gateway, so every finished request's record is
//! fsynced here before anyone relies on it, and stays until the control plane acks it.
//!
//! Layout of the spool directory:
//! - `segment-<first seq, 20 digits>.log`: frames `[u32 LE len][u32 LE crc32(payload)][payload]`,
//!   the payload being a prost-encoded `UsageRecord`; a new segment starts once the active one
//!   reaches 8 MiB.
//! - `acked`: the decimal seq up to which the control plane has acked.
//! - `LOCK`: held for the spool's lifetime so two processes never interleave writes.
//!
//! A record's seq is fixed once it is on disk: redelivery after a crash carries the same seq and
//! request_id, which is what lets the control plane dedupe.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use prost::Message;
use switchyard_proto::pb;

const SEGMENT_LIMIT: u64 = 8 * 1024 * 1024;
const FRAME_HEADER: usize = 8;
const ACKED_FILE: &str = "acked";
/// Left by versions that replaced the ack mark through a temp file; removed on open.
const ACKED_TMP: &str = "acked.tmp";
const LOCK_FILE: &str = "LOCK";
const SEGMENT_PREFIX: &str = "segment-";
const SEGMENT_SUFFIX: &str = ".log";
const SEQ_DIGITS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool: {} is corrupt at byte {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("spool: {} is locked by another process", path.display())]
    Locked { path: PathBuf },
    #[error("spool: usage record encodes to {size} bytes, more than a frame can hold")]
    RecordTooLarge { size: usize },
}

/// The durable usage spool. Appends and acks serialize on the writer lock (they do disk I/O);
/// reads only take the short state lock so the async shipper never waits behind an fsync.
pub struct Spool {
    dir: PathBuf,
    writer: Mutex<Writer>,
    state: Mutex<State>,
    _lock: File,
}

struct Writer {
    segments: BTreeMap<u64, Segment>,
    /// Only a segment created by this process is appended to: recovered ones may end in a
    /// truncated tear, and reusing them buys nothing. Writes go at the file position, which
    /// stays at the end because a segment is retired after any failed write.
    active: Option<File>,
    last_seq: u64,
    segment_limit: u64,
}

struct Segment {
    path: PathBuf,
    /// Highest seq the file may hold; `first_seq - 1` while it holds none.
    last_seq: u64,
    bytes: u64,
}

struct State {
    pending: VecDeque<pb::UsageRecord>,
    acked_seq: u64,
    last_seq: u64,
    disk_bytes: u64,
    /// Bytes of the frames of `pending` (unacked) records: what the disk cap bounds.
    pending_bytes: u64,
}

/// A backlog from a control-plane outage (hundreds of thousands of records) leaves the
/// queue's buffer at its high-water mark once acked: measured in the lab
/// (`tests/bench/lab/start.sh`, 15 s at c=8 with the control plane stopped), the gateway
/// stayed at 113 MiB after the backlog was acked, against 33 MiB before the outage. The
/// buffer is given back once it is mostly empty; halving at a quarter keeps it amortised.
fn shrink_after_backlog(pending: &mut VecDeque<pb::UsageRecord>) {
    const KEEP: usize = 4096;
    if pending.capacity() > KEEP && pending.len() < pending.capacity() / 4 {
        pending.shrink_to((pending.len() * 2).max(KEEP));
    }
}

/// On-disk size of one record's frame.
fn frame_len(record: &pb::UsageRecord) -> u64 {
    (FRAME_HEADER + record.encoded_len()) as u64
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("pending", &state.pending.len())
            .field("acked_seq", &state.acked_seq)
            .field("last_seq", &state.last_seq)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating if needed) the spool directory, recovering every record not yet acked.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        Self::open_with_segment_limit(dir, SEGMENT_LIMIT)
    }

    fn open_with_segment_limit(dir: &Path, segment_limit: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let lock_file = lock_dir(dir)?;
        remove_if_exists(&dir.join(ACKED_TMP))?;
        let acked_seq = read_acked(dir)?;

        let mut segments = BTreeMap::new();
        let mut pending = VecDeque::new();
        let mut last_seq = acked_seq;
        let mut prev_seq = 0;
        let mut removed_any = false;
        for (first_seq, path) in list_segments(dir)? {
            if first_seq <= prev_seq {
                return Err(SpoolError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!("segment overlaps seq {prev_seq} of an earlier segment"),
                });
            }
            let (records, bytes) = recover_segment(&path, first_seq)?;
            let seg_last = records.last().map_or(first_seq - 1, |r| r.seq);
            // A segment is named after the seq it was opened for, so even an empty one proves
            // every seq before it was handed out.
            last_seq = last_seq.max(seg_last);
            prev_seq = seg_last;
            if records.is_empty() || seg_last <= acked_seq {
                // Fully acked (crash between writing the ack mark and deleting) or empty
                // (crash or failure before the first frame landed).
                remove_if_exists(&path)?;
                removed_any = true;
                continue;
            }
            pending.extend(records.into_iter().filter(|r| r.seq > acked_seq));
            segments.insert(
                first_seq,
                Segment {
                    path,
                    last_seq: seg_last,
                    bytes,
                },
            );
        }
        if removed_any {
            sync_dir(dir)?;
        }

        let disk_bytes = segments.values().map(|s| s.bytes).sum();
        let pending_bytes = pending.iter().map(frame_len).sum();
        Ok(Spool {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer {
                segments,
                active: None,
                last_seq,
                segment_limit,
            }),
            state: Mutex::new(State {
                pending,
                acked_seq,
                last_seq,
                disk_bytes,
                pending_bytes,
            }),
            _lock: lock_file,
        })
    }

    /// Assigns consecutive seq numbers (continuing after restart), appends, and fdatasyncs
    /// before returning the last assigned seq. Blocking I/O: run it on `spawn_blocking`.
    ///
    /// On `Err` the records may or may not have reached the disk; their seqs are never handed
    /// out again, and appending them once more is safe because the ledger dedupes by request_id.
    pub fn append(&self, mut records: Vec<pb::UsageRecord>) -> Result<u64, SpoolError> {
        let mut w = lock(&self.writer);
        if records.is_empty() {
            return Ok(w.last_seq);
        }
        let first_seq = w.last_seq + 1;
        let mut buf = Vec::new();
        for (seq, record) in (first_seq..).zip(records.iter_mut()) {
            record.seq = seq;
            encode_frame(record, &mut buf)?;
        }
        let batch_last = first_seq + records.len() as u64 - 1;

        if w.active.is_none() || self.active_segment_full(&w) {
            self.rotate(&mut w, first_seq)?;
        }
        let Some((&seg_first, segment)) = w.segments.last_key_value() else {
            return Err(missing_active(&self.dir));
        };
        let path = segment.path.clone();
        let start_len = segment.bytes;
        let Some(file) = w.active.as_mut() else {
            return Err(missing_active(&self.dir));
        };

        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        let outcome = match written {
            Ok(()) => Ok(start_len + buf.len() as u64),
            Err(source) => Err((rollback(file, &path, start_len), source)),
        };
        match outcome {
            Ok(new_len) => {
                if let Some(segment) = w.segments.get_mut(&seg_first) {
                    segment.bytes = new_len;
                    segment.last_seq = batch_last;
                }
                w.last_seq = batch_last;
                let mut s = lock(&self.state);
                s.pending.extend(records);
                s.last_seq = batch_last;
                s.disk_bytes += buf.len() as u64;
                s.pending_bytes += buf.len() as u64;
                Ok(batch_last)
            }
            Err((len_on_disk, source)) => {
                // After a failed fsync the page cache may already have dropped the dirty pages
                // while the file kept the data, so nothing more is written to this segment and
                // the batch's seqs are burned: any that did land keep a seq nobody else gets.
                w.active = None;
                if let Some(segment) = w.segments.get_mut(&seg_first) {
                    segment.bytes = len_on_disk;
                    segment.last_seq = batch_last;
                }
                w.last_seq = batch_last;
                let mut s = lock(&self.state);
                s.last_seq = batch_last;
                s.disk_bytes = (s.disk_bytes + len_on_disk).saturating_sub(start_len);
                Err(SpoolError::Io {
                    op: "append to",
                    path,
                    source,
                })
            }
        }
    }

    /// Up to `max` pending (unacked) records with seq > `after`, in seq order.
    pub fn pending_after(&self, after: u64, max: usize) -> Vec<pb::UsageRecord> {
        let s = lock(&self.state);
        let start = s.pending.partition_point(|r| r.seq <= after);
        s.pending.range(start..).take(max).cloned().collect()
    }

    /// Marks everything <= `seq` as acked: persists the mark atomically, drops those records
    /// from memory and deletes rotated segment files whose records are all acked. The active
    /// segment is kept (to avoid a create + directory fsync per batch) until it rotates.
    /// Blocking I/O: run it on `spawn_blocking`.
    pub fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        let mut w = lock(&self.writer);
        // An ack past what was ever assigned would delete records appended later.
        let seq = seq.min(w.last_seq);
        if seq <= lock(&self.state).acked_seq {
            return Ok(());
        }
        write_acked(&self.dir, seq)?;
        {
            let mut s = lock(&self.state);
            s.acked_seq = seq;
            while s.pending.front().is_some_and(|r| r.seq <= seq) {
                if let Some(acked) = s.pending.pop_front() {
                    s.pending_bytes = s.pending_bytes.saturating_sub(frame_len(&acked));
                }
            }
            shrink_after_backlog(&mut s.pending);
        }
        self.remove_acked_segments(&mut w, seq);
        Ok(())
    }

    pub fn pending_len(&self) -> usize {
        lock(&self.state).pending.len()
    }

    pub fn acked_seq(&self) -> u64 {
        lock(&self.state).acked_seq
    }

    pub fn last_seq(&self) -> u64 {
        lock(&self.state).last_seq
    }

    /// Bytes of unacknowledged records on disk: what grows while the control plane is
    /// away, and what the disk cap (`spool_cap`) bounds. Acked records still in the active
    /// segment add at most one segment (8 MiB) until it rotates.
    pub fn pending_bytes(&self) -> u64 {
        lock(&self.state).pending_bytes
    }

    /// Bytes held in segment files, acked records in the active segment included.
    pub fn disk_bytes(&self) -> u64 {
        lock(&self.state).disk_bytes
    }

    fn active_segment_full(&self, w: &Writer) -> bool {
        w.segments
            .last_key_value()
            .is_some_and(|(_, s)| s.bytes >= w.segment_limit)
    }

    fn rotate(&self, w: &mut Writer, first_seq: u64) -> Result<(), SpoolError> {
        w.active = None;
        let path = self.dir.join(segment_name(first_seq));
        // Truncating rather than `create_new`: a file of this name can only be the empty
        // leftover of an earlier failed rotate, since names start past every seq assigned.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err("create segment", &path))?;
        // Without this the new file's directory entry may not survive a crash even though
        // its data was fdatasynced.
        if let Err(error) = sync_dir(&self.dir) {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        w.segments.insert(
            first_seq,
            Segment {
                path,
                last_seq: first_seq - 1,
                bytes: 0,
            },
        );
        w.active = Some(file);
        let acked = lock(&self.state).acked_seq;
        self.remove_acked_segments(w, acked);
        Ok(())
    }

    fn remove_acked_segments(&self, w: &mut Writer, acked: u64) {
        let active_first = if w.active.is_some() {
            w.segments.last_key_value().map(|(&k, _)| k)
        } else {
            None
        };
        let done: Vec<u64> = w
            .segments
            .iter()
            .filter(|&(&first, s)| Some(first) != active_first && s.last_seq <= acked)
            .map(|(&first, _)| first)
            .collect();
        let mut freed = 0;
        for first in done {
            let Some(segment) = w.segments.get(&first) else {
                continue;
            };
            match fs::remove_file(&segment.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    // The ack mark already covers it, so a leftover file only costs disk;
                    // the next ack (or the next open) retries.
                    tracing::warn!(path = %segment.path.display(), %error, "cannot delete acked spool segment");
                    continue;
                }
            }
            freed += segment.bytes;
            w.segments.remove(&first);
        }
        if freed > 0 {
            let mut s = lock(&self.state);
            s.disk_bytes = s.disk_bytes.saturating_sub(freed);
        }
    }
}

/// Truncates a failed write away; returns the file's length afterwards, as best known.
fn rollback(file: &mut File, path: &Path, start_len: u64) -> u64 {
    match file.set_len(start_len).and_then(|()| file.sync_data()) {
        Ok(()) => start_len,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot roll back failed spool append");
            file.metadata().map_or(start_len, |m| m.len())
        }
    }
}

fn missing_active(dir: &Path) -> SpoolError {
    SpoolError::Io {
        op: "find the active segment in",
        path: dir.to_path_buf(),
        source: io::Error::other("no active segment after rotation"),
    }
}

fn encode_frame(record: &pb::UsageRecord, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
    let payload = record.encode_to_vec();
    let len = u32::try_from(payload.len()).map_err(|_| SpoolError::RecordTooLarge {
        size: payload.len(),
    })?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// Reads one segment, truncating a torn tail. Returns its records and its length afterwards.
fn recover_segment(path: &Path, first_seq: u64) -> Result<(Vec<pb::UsageRecord>, u64), SpoolError> {
    let bytes = fs::read(path).map_err(io_err("read segment", path))?;
    let (records, end) = parse_frames(&bytes, path, first_seq)?;
    if let Some(Torn { valid_len, reason }) = end {
        // Only a write that never returned (crash, or a failed append) leaves a torn tail,
        // and nobody was told those records were durable, so dropping them loses nothing.
        tracing::warn!(
            path = %path.display(),
            valid_len,
            discarded = bytes.len() as u64 - valid_len,
            reason,
            "truncating torn tail of spool segment"
        );
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err("open segment", path))?;
        file.set_len(valid_len)
            .and_then(|()| file.sync_all())
            .map_err(io_err("truncate segment", path))?;
        return Ok((records, valid_len));
    }
    Ok((records, bytes.len() as u64))
}

struct Torn {
    valid_len: u64,
    reason: &'static str,
}

fn parse_frames(
    bytes: &[u8],
    path: &Path,
    first_seq: u64,
) -> Result<(Vec<pb::UsageRecord>, Option<Torn>), SpoolError> {
    let mut records: Vec<pb::UsageRecord> = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let torn = |reason| {
            Some(Torn {
                valid_len: pos as u64,
                reason,
            })
        };
        let corrupt = |reason: String| SpoolError::Corrupt {
            path: path.to_path_buf(),
            offset: pos as u64,
            reason,
        };
        // Zeros past the last good frame are what a crash leaves on filesystems that extend
        // the file before its data blocks land.
        let zero_tail = || rest.iter().all(|&b| b == 0);
        let Some((header, body)) = rest.split_at_checked(FRAME_HEADER) else {
            return Ok((records, torn("partial frame header")));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = body.get(..len) else {
            return Ok((records, torn("frame extends past end of file")));
        };
        if crc32fast::hash(payload) != crc {
            if body.len() == len || zero_tail() {
                return Ok((records, torn("checksum mismatch in final frame")));
            }
            return Err(corrupt("checksum mismatch".to_owned()));
        }
        // Never written (every record has a seq), but it is what a zeroed header decodes to.
        if len == 0 {
            if zero_tail() {
                return Ok((records, torn("zero-filled tail")));
            }
            return Err(corrupt("empty frame".to_owned()));
        }
        let record = pb::UsageRecord::decode(payload)
            .map_err(|e| corrupt(format!("undecodable record: {e}")))?;
        let prev = records.last().map_or(first_seq - 1, |r| r.seq);
        if record.seq <= prev {
            return Err(corrupt(format!(
                "seq {} does not follow seq {prev}",
                record.seq
            )));
        }
        records.push(record);
        pos += FRAME_HEADER + len;
    }
    Ok((records, None))
}

fn segment_name(first_seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_seq:0SEQ_DIGITS$}{SEGMENT_SUFFIX}")
}

/// Segment files in seq order; other files in the directory are left alone.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list directory", dir))? {
        let entry = entry.map_err(io_err("list directory", dir))?;
        let name = entry.file_name();
        let Some(digits) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        else {
            continue;
        };
        let path = entry.path();
        let first_seq = digits
            .parse::<u64>()
            .ok()
            .filter(|&s| s > 0 && digits.len() == SEQ_DIGITS)
            .ok_or_else(|| SpoolError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "segment name is not a 20-digit seq >= 1".to_owned(),
            })?;
        found.push((first_seq, path));
    }
    found.sort_unstable_by_key(|&(seq, _)| seq);
    Ok(found)
}

fn read_acked(dir: &Path) -> Result<u64, SpoolError> {
    let path = dir.join(ACKED_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|e| SpoolError::Corrupt {
            path,
            offset: 0,
            reason: format!("ack mark is not a seq: {e}"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(SpoolError::Io {
            op: "read",
            path,
            source,
        }),
    }
}

/// The ack mark only saves resending: records past a stale mark are sent again and the
/// ledger drops them by request id, and a segment is deleted only after the mark covering it
/// was written. So the mark is overwritten in place, fixed width (one sector, never a
/// partial number), without an fsync: a killed process keeps the write (page cache) and a
/// power loss at worst resends what the control plane already has. The durable variant
/// (temp file, two fsyncs, rename) cost eight syscalls per ack on the gateway.
fn write_acked(dir: &Path, seq: u64) -> Result<(), SpoolError> {
    use std::os::unix::fs::FileExt;
    let path = dir.join(ACKED_FILE);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .and_then(|file| file.write_all_at(format!("{seq:020}\n").as_bytes(), 0))
        .map_err(io_err("write", &path))
}

fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(SpoolError::Locked { path }),
        Err(TryLockError::Error(source)) => Err(SpoolError::Io {
            op: "lock",
            path,
            source,
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn remove_if_exists(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SpoolError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io { op, path, source }
}

/// Poisoning is ignored: if a panic ever slipped through while a lock was held, refusing all
/// further metering would lose more billing data than carrying on with the state as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> pb::UsageRecord {
        pb::UsageRecord {
            request_id: id.to_owned(),
            model: "openai/gpt-4o-mini".to_owned(),
            cost_nanos: 1_234,
            ..Default::default()
        }
    }

    fn records(prefix: &str, n: usize) -> Vec<pb::UsageRecord> {
        (0..n).map(|i| record(&format!("{prefix}-{i}"))).collect()
    }

    fn ids(records: &[pb::UsageRecord]) -> Vec<String> {
        records.iter().map(|r| r.request_id.clone()).collect()
    }

    fn seqs(records: &[pb::UsageRecord]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    fn append_bytes(path: &Path, bytes: &[u8]) {
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(bytes).unwrap();
    }

    #[test]
    fn append_then_reopen_recovers_pending_and_continues_seq() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            assert_eq!(spool.append(records("a", 3)).unwrap(), 3);
            assert_eq!(spool.append(records("b", 2)).unwrap(), 5);
            assert_eq!(spool.pending_len(), 5);
            assert!(spool.disk_bytes() > 0);
        }
        let spool = Spool::open(dir.path()).unwrap();
        let pending = spool.pending_after(0, 100);
        assert_eq!(seqs(&pending), vec![1, 2, 3, 4, 5]);
        assert_eq!(ids(&pending), vec!["a-0", "a-1", "a-2", "b-0", "b-1"]);
        assert_eq!(pending[0].cost_nanos, 1_234);
        assert_eq!((spool.last_seq(), spool.acked_seq()), (5, 0));

        // Seqs continue after restart, in a fresh segment.
        assert_eq!(spool.append(records("c", 1)).unwrap(), 6);
        assert_eq!(segment_files(dir.path()).len(), 2);
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(seqs(&spool.pending_after(0, 100)), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn append_of_nothing_assigns_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.append(Vec::new()).unwrap(), 0);
        spool.append(records("a", 2)).unwrap();
        assert_eq!(spool.append(Vec::new()).unwrap(), 2);
        assert_eq!(spool.pending_len(), 2);
    }

    #[test]
    fn an_acked_backlog_gives_its_memory_back() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let last = spool.append(records("outage", 50_000)).unwrap();
        assert!(lock(&spool.state).pending.capacity() >= 50_000);
        spool.ack(last - 10).unwrap();
        let s = lock(&spool.state);
        assert_eq!(s.pending.len(), 10);
        assert!(
            s.pending.capacity() <= 4096,
            "capacity {} kept after the backlog was acked",
            s.pending.capacity()
        );
    }

    #[test]
    fn pending_bytes_follow_appends_acks_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending_bytes(), 0);
        spool.append(records("a", 10)).unwrap();
        let full = spool.pending_bytes();
        assert_eq!(full, spool.disk_bytes(), "one segment, nothing acked");
        spool.ack(4).unwrap();
        let left = spool.pending_bytes();
        assert!(left < full && left > 0, "{left} of {full}");
        // The active segment keeps the acked frames until it rotates.
        assert_eq!(spool.disk_bytes(), full);
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending_bytes(), left);
        spool.ack(10).unwrap();
        assert_eq!(spool.pending_bytes(), 0);
    }

    #[test]
    fn ack_deletes_segments_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open_with_segment_limit(dir.path(), 1).unwrap();
            for i in 0..4 {
                spool.append(records(&format!("s{i}"), 2)).unwrap();
            }
            assert_eq!(segment_files(dir.path()).len(), 4);
            let before = spool.disk_bytes();

            // seq 3 is mid-segment: only the first segment is fully acked.
            spool.ack(3).unwrap();
            assert_eq!(spool.acked_seq(), 3);
            assert_eq!(seqs(&spool.pending_after(0, 100)), vec![4, 5, 6, 7, 8]);
            assert_eq!(
                segment_files(dir.path()),
                vec![
                    dir.path().join(segment_name(3)),
                    dir.path().join(segment_name(5)),
                    dir.path().join(segment_name(7)),
                ]
            );
            assert!(spool.disk_bytes() < before);

            // Acks never go backwards.
            spool.ack(1).unwrap();
            assert_eq!(spool.acked_seq(), 3);

            // The active segment stays until it rotates, even when fully acked.
            spool.ack(8).unwrap();
            assert_eq!(spool.pending_len(), 0);
            assert_eq!(
                segment_files(dir.path()),
                vec![dir.path().join(segment_name(7))]
            );
        }
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending_len(), 0);
        assert_eq!((spool.acked_seq(), spool.last_seq()), (8, 8));
        // Recovered segments are never appended to, so fully acked ones go at open.
        assert!(segment_files(dir.path()).is_empty());
        assert_eq!(spool.disk_bytes(), 0);
        assert_eq!(spool.append(records("after", 1)).unwrap(), 9);
    }

    #[test]
    fn ack_mark_survives_reopen_with_segments_left() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            spool.append(records("a", 5)).unwrap();
            spool.ack(2).unwrap();
        }
        let mark = fs::read_to_string(dir.path().join(ACKED_FILE)).unwrap();
        assert_eq!(mark.trim().parse::<u64>().unwrap(), 2);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(seqs(&spool.pending_after(0, 100)), vec![3, 4, 5]);
        assert_eq!(spool.acked_seq(), 2);
    }

    #[test]
    fn ack_past_last_seq_is_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(records("a", 2)).unwrap();
        spool.ack(1_000).unwrap();
        assert_eq!(spool.acked_seq(), 2);
        // Records appended later are not covered by the earlier, over-reaching ack.
        spool.append(records("b", 1)).unwrap();
        assert_eq!(seqs(&spool.pending_after(0, 10)), vec![3]);
    }

    #[test]
    fn torn_tail_is_truncated() {
        let full = record("torn").encode_to_vec();
        let mut header = Vec::new();
        header.extend_from_slice(&u32::try_from(full.len()).unwrap().to_le_bytes());
        header.extend_from_slice(&crc32fast::hash(&full).to_le_bytes());
        let mut bad_crc = header.clone();
        bad_crc[4] ^= 0xff;
        bad_crc.extend_from_slice(&full);
        let mut half_payload = header.clone();
        half_payload.extend_from_slice(&full[..full.len() / 2]);

        let tails: [(&str, Vec<u8>); 4] = [
            ("partial header", header[..3].to_vec()),
            ("partial payload", half_payload),
            ("bad crc on final frame", bad_crc),
            ("zero-filled", vec![0; 4096]),
        ];
        for (what, tail) in tails {
            let dir = tempfile::tempdir().unwrap();
            let good_len;
            {
                let spool = Spool::open(dir.path()).unwrap();
                spool.append(records("ok", 3)).unwrap();
                good_len = spool.disk_bytes();
            }
            let segment = dir.path().join(segment_name(1));
            append_bytes(&segment, &tail);

            let spool = Spool::open(dir.path()).unwrap();
            assert_eq!(spool.pending_len(), 3, "{what}");
            assert_eq!(fs::metadata(&segment).unwrap().len(), good_len, "{what}");
            assert_eq!(spool.disk_bytes(), good_len, "{what}");
            assert_eq!(spool.append(records("next", 1)).unwrap(), 4, "{what}");
            drop(spool);
            let spool = Spool::open(dir.path()).unwrap();
            assert_eq!(
                seqs(&spool.pending_after(0, 10)),
                vec![1, 2, 3, 4],
                "{what}"
            );
        }
    }

    #[test]
    fn segment_with_only_a_torn_frame_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            spool.append(records("a", 2)).unwrap();
        }
        // A crash right after creating the next segment, mid-way through its first frame.
        let next = dir.path().join(segment_name(3));
        fs::write(&next, [7, 0, 0]).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending_len(), 2);
        assert!(!next.exists());
        assert_eq!(spool.append(records("b", 1)).unwrap(), 3);
    }

    #[test]
    fn torn_tail_left_by_a_failed_append_in_an_earlier_segment_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            spool.append(records("a", 2)).unwrap();
        }
        // What a failed append whose rollback also failed leaves behind: half a frame in
        // the retired segment, seqs 3..=4 burned, the next batch in a new segment.
        append_bytes(&dir.path().join(segment_name(1)), &[40, 0, 0, 0, 1, 2]);
        let mut next = Vec::new();
        let mut r = record("b");
        r.seq = 5;
        encode_frame(&r, &mut next).unwrap();
        fs::write(dir.path().join(segment_name(5)), &next).unwrap();

        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(seqs(&spool.pending_after(0, 10)), vec![1, 2, 5]);
        assert_eq!(spool.append(records("c", 1)).unwrap(), 6);
    }

    #[test]
    fn corrupt_middle_frame_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            spool.append(records("a", 3)).unwrap();
        }
        let segment = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&segment).unwrap();
        // A payload byte of the first of three frames.
        bytes[FRAME_HEADER + 2] ^= 0x01;
        fs::write(&segment, &bytes).unwrap();

        match Spool::open(dir.path()) {
            Err(SpoolError::Corrupt { path, offset, .. }) => {
                assert_eq!(path, segment);
                assert_eq!(offset, 0);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Nothing was truncated: the data is there for a human to inspect.
        assert_eq!(fs::read(&segment).unwrap(), bytes);
    }

    #[test]
    fn out_of_order_seq_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for seq in [1, 2, 2] {
            let mut r = record("dup");
            r.seq = seq;
            encode_frame(&r, &mut bytes).unwrap();
        }
        fs::write(dir.path().join(segment_name(1)), &bytes).unwrap();
        assert!(matches!(
            Spool::open(dir.path()),
            Err(SpoolError::Corrupt { .. })
        ));
    }

    #[test]
    fn rotation_starts_segments_named_by_first_seq() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 600;
        let spool = Spool::open_with_segment_limit(dir.path(), limit).unwrap();
        for i in 0..50 {
            spool.append(vec![record(&format!("r{i}"))]).unwrap();
        }
        let files = list_segments(dir.path()).unwrap();
        assert!(files.len() > 2, "expected rotation, got {files:?}");
        assert_eq!(files[0].0, 1);
        let mut total = 0;
        for (i, (first_seq, path)) in files.iter().enumerate() {
            let bytes = fs::read(path).unwrap();
            total += bytes.len() as u64;
            let (recs, torn) = parse_frames(&bytes, path, *first_seq).unwrap();
            assert!(torn.is_none());
            assert_eq!(recs[0].seq, *first_seq);
            // A segment only grows past the limit by the batch (here one small frame) that
            // crossed it.
            assert!((bytes.len() as u64) < limit + 64);
            if let Some((next_first, _)) = files.get(i + 1) {
                assert_eq!(recs.last().unwrap().seq + 1, *next_first);
                assert!(bytes.len() as u64 >= limit);
            }
        }
        assert_eq!(total, spool.disk_bytes());
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(
            seqs(&spool.pending_after(0, 100)),
            (1..=50).collect::<Vec<_>>()
        );
    }

    #[test]
    fn default_segment_limit_is_eight_mib() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        // ~64 KiB records: 8 MiB is crossed after about 128 of them.
        let big = "x".repeat(64 * 1024);
        for i in 0..130 {
            let mut r = record(&format!("big{i}"));
            r.upstream_id = big.clone();
            spool.append(vec![r]).unwrap();
        }
        let files = list_segments(dir.path()).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        let first_len = fs::metadata(&files[0].1).unwrap().len();
        assert!((SEGMENT_LIMIT..SEGMENT_LIMIT + 70 * 1024).contains(&first_len));
    }

    #[test]
    fn pending_after_paginates() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(records("p", 10)).unwrap();

        let mut after = 0;
        let mut pages = Vec::new();
        loop {
            let page = spool.pending_after(after, 4);
            let Some(last) = page.last() else { break };
            after = last.seq;
            pages.push(seqs(&page));
        }
        assert_eq!(pages, vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]]);
        assert!(spool.pending_after(10, 4).is_empty());
        assert_eq!(seqs(&spool.pending_after(100, 4)), Vec::<u64>::new());

        spool.ack(6).unwrap();
        assert_eq!(seqs(&spool.pending_after(0, 2)), vec![7, 8]);
        assert_eq!(seqs(&spool.pending_after(8, 100)), vec![9, 10]);
        assert!(spool.pending_after(0, 0).is_empty());
    }

    #[test]
    fn second_open_of_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert!(matches!(
            Spool::open(dir.path()),
            Err(SpoolError::Locked { .. })
        ));
        drop(spool);
        Spool::open(dir.path()).unwrap();
    }

    #[test]
    fn garbage_ack_mark_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ACKED_FILE), "twelve").unwrap();
        assert!(matches!(
            Spool::open(dir.path()),
            Err(SpoolError::Corrupt { .. })
        ));
    }
}
