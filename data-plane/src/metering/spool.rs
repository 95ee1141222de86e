//! Durable, append-only local spool of usage records.
//!
//! Billing must survive a `kill -9` of the gateway, so every finished request's record is
//! written here (into the page cache, which outlives the process) as soon as the appender's
//! group commit takes it, and stays until the control plane acks it. `sync` (fdatasync) makes
//! the writes survive the machine too; the appender calls it on its own cadence
//! (`meter::DEFAULT_SYNC_EVERY`, `--spool-sync-ms`) rather than once per batch, because an fdatasync every 2 ms cost the
//! gateway's c=1 p99 ~30 µs on shared cores (`switchyard-bench --only c1`, README).
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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use switchyard_proto::pb;

pub use super::spool_frame::SpooledRecord;
use super::spool_frame::{Frames, Torn, encode_frame, parse_frames};

const SEGMENT_LIMIT: u64 = 8 * 1024 * 1024;
/// Unacked records kept in memory (encoded, ~440 B each), the newest ones: in steady state
/// the shipper sends what was just appended and never reads a segment back. Holding a whole
/// control-plane outage's backlog would let memory grow with the spool's disk cap (lab,
/// when records were kept decoded: +85 MiB of gateway memory for 26 MB spooled), so older
/// records are read back from their segment when the shipper reaches them. Well above what
/// the shipper has in flight (4 batches of 256).
const RECENT_RECORDS: usize = 4096;
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
    #[error("spool: usage batch encodes to {size} bytes, more than a segment can hold")]
    BatchTooLarge { size: usize },
}

/// The durable usage spool. Appends and acks serialize on the writer lock (they do disk I/O);
/// reads only take the short state lock so the async shipper never waits behind an fsync.
pub struct Spool {
    dir: PathBuf,
    writer: Mutex<Writer>,
    state: Mutex<State>,
    recent_limit: usize,
    _lock: File,
}

struct Writer {
    /// Only a segment created by this process is appended to: recovered ones may end in a
    /// truncated tear, and reusing them buys nothing. Writes go at the file position, which
    /// stays at the end because a segment is retired after any failed write.
    active: Option<Active>,
    last_seq: u64,
    segment_limit: u64,
    /// The active segment holds writes not yet fdatasynced.
    unsynced: bool,
}

struct Active {
    file: File,
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
}

struct Segment {
    path: PathBuf,
    /// Highest seq the file may hold; `first_seq - 1` while it holds none.
    last_seq: u64,
    bytes: u64,
    /// End offset of each whole frame, in order: frame `i` holds seq `first_seq + i`. What
    /// lets a record be read back with one positioned read, and the unacked bytes be known
    /// without the records (4 bytes a record).
    ends: Vec<u32>,
}

impl Segment {
    /// Frames holding seqs > `acked`, and their bytes.
    fn unacked(&self, first_seq: u64, acked: u64) -> (usize, u64) {
        let done = usize::try_from((acked + 1).saturating_sub(first_seq))
            .unwrap_or(usize::MAX)
            .min(self.ends.len());
        let end = self.ends.last().copied().unwrap_or(0);
        (self.ends.len() - done, u64::from(end - self.start_of(done)))
    }

    fn start_of(&self, frame: usize) -> u32 {
        frame.checked_sub(1).map_or(0, |prev| self.ends[prev])
    }
}

struct State {
    /// Every segment file, by the seq it was opened for.
    segments: BTreeMap<u64, Segment>,
    /// The newest unacked records, at most `recent_limit`, in seq order.
    recent: VecDeque<SpooledRecord>,
    /// Every unacked record with seq >= this is in `recent`.
    recent_from: u64,
    acked_seq: u64,
    last_seq: u64,
    disk_bytes: u64,
    pending_len: usize,
    /// Bytes of the frames of unacked records: what the disk cap bounds.
    pending_bytes: u64,
}

impl State {
    fn remember(&mut self, records: Vec<SpooledRecord>, limit: usize) {
        self.recent.extend(records);
        let excess = self.recent.len().saturating_sub(limit);
        if let Some(dropped) = self.recent.drain(..excess).next_back() {
            self.recent_from = dropped.seq + 1;
        }
    }

    fn recount(&mut self) {
        let (len, bytes) = self
            .segments
            .iter()
            .map(|(&first, segment)| segment.unacked(first, self.acked_seq))
            .fold((0, 0), |(n, b), (sn, sb)| (n + sn, b + sb));
        self.pending_len = len;
        self.pending_bytes = bytes;
    }

    /// The records `pending_after` returns, if all of them are in memory.
    fn recent_after(&self, after: u64, max: usize) -> Option<Vec<SpooledRecord>> {
        if after.max(self.acked_seq) + 1 < self.recent_from {
            return None;
        }
        let start = self.recent.partition_point(|r| r.seq <= after);
        Some(self.recent.range(start..).take(max).cloned().collect())
    }

    /// Where the first `max` unacked records after `after` lie on disk, within one segment.
    fn read_back(&self, after: u64, max: usize) -> Option<ReadBack> {
        let from = after.max(self.acked_seq) + 1;
        let (first_seq, segment) = self
            .segments
            .iter()
            .find(|&(&first, s)| first + s.ends.len() as u64 > from)?;
        let start = usize::try_from(from.saturating_sub(*first_seq)).ok()?;
        let end = start.saturating_add(max).min(segment.ends.len());
        if start >= end {
            return None;
        }
        let offset = segment.start_of(start);
        Some(ReadBack {
            path: segment.path.clone(),
            first_seq: first_seq + start as u64,
            offset: u64::from(offset),
            len: (segment.ends[end - 1] - offset) as usize,
            count: end - start,
        })
    }
}

/// A run of whole frames to read back from a segment.
struct ReadBack {
    path: PathBuf,
    first_seq: u64,
    offset: u64,
    len: usize,
    count: usize,
}

impl ReadBack {
    fn read(self) -> Result<Vec<SpooledRecord>, SpoolError> {
        let mut bytes = vec![0; self.len];
        File::open(&self.path)
            .and_then(|file| file.read_exact_at(&mut bytes, self.offset))
            .map_err(io_err("read back", &self.path))?;
        let bytes = Bytes::from(bytes);
        let frames = parse_frames(&bytes, &self.path, self.offset, self.first_seq)?;
        // These frames were whole and synced when indexed, so anything short of all of
        // them means the file changed underneath the spool.
        if frames.torn.is_some() || frames.records.len() != self.count {
            return Err(SpoolError::Corrupt {
                path: self.path,
                offset: self.offset,
                reason: format!(
                    "{} whole frames where {} were written",
                    frames.records.len(),
                    self.count
                ),
            });
        }
        Ok(frames.records)
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("pending", &state.pending_len)
            .field("acked_seq", &state.acked_seq)
            .field("last_seq", &state.last_seq)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating if needed) the spool directory, recovering every record not yet acked.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        Self::open_with(dir, SEGMENT_LIMIT, RECENT_RECORDS)
    }

    fn open_with(dir: &Path, segment_limit: u64, recent_limit: usize) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let lock_file = lock_dir(dir)?;
        remove_if_exists(&dir.join(ACKED_TMP))?;
        let acked_seq = read_acked(dir)?;

        let mut state = State {
            segments: BTreeMap::new(),
            recent: VecDeque::new(),
            recent_from: acked_seq + 1,
            acked_seq,
            last_seq: acked_seq,
            disk_bytes: 0,
            pending_len: 0,
            pending_bytes: 0,
        };
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
            let (frames, bytes) = recover_segment(&path, first_seq)?;
            let seg_last = frames.records.last().map_or(first_seq - 1, |r| r.seq);
            // A segment is named after the seq it was opened for, so even an empty one proves
            // every seq before it was handed out.
            state.last_seq = state.last_seq.max(seg_last);
            prev_seq = seg_last;
            if frames.records.is_empty() || seg_last <= acked_seq {
                // Fully acked (crash between writing the ack mark and deleting) or empty
                // (crash or failure before the first frame landed).
                remove_if_exists(&path)?;
                removed_any = true;
                continue;
            }
            let ends = frames
                .ends
                .iter()
                .map(|&end| u32::try_from(end))
                .collect::<Result<_, _>>()
                .map_err(|_| SpoolError::Corrupt {
                    path: path.clone(),
                    offset: u64::from(u32::MAX),
                    reason: "segment larger than 4 GiB".to_owned(),
                })?;
            // One segment at a time, and only the newest records copied out of its buffer:
            // opening after a long outage must not hold the backlog in memory.
            let unacked: Vec<_> = frames
                .records
                .iter()
                .filter(|r| r.seq > acked_seq)
                .collect();
            let older = unacked.len().saturating_sub(recent_limit);
            if let Some(first_kept) = unacked.get(older).filter(|_| older > 0) {
                state.recent.clear();
                state.recent_from = first_kept.seq;
            }
            let kept = unacked[older..].iter().map(|r| r.detached()).collect();
            state.remember(kept, recent_limit);
            state.disk_bytes += bytes;
            state.segments.insert(
                first_seq,
                Segment {
                    path,
                    last_seq: seg_last,
                    bytes,
                    ends,
                },
            );
        }
        if removed_any {
            sync_dir(dir)?;
        }
        state.recount();
        Ok(Spool {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer {
                active: None,
                last_seq: state.last_seq,
                segment_limit,
                unsynced: false,
            }),
            state: Mutex::new(state),
            recent_limit,
            _lock: lock_file,
        })
    }

    /// Assigns consecutive seq numbers (continuing after restart), appends, and returns the
    /// last assigned seq. The records then survive the process; `sync` makes them survive
    /// the machine. Blocking I/O: run it on `spawn_blocking`.
    ///
    /// On `Err` the records may or may not have reached the disk; their seqs are never handed
    /// out again, and appending them once more is safe because the ledger dedupes by request_id.
    pub fn append(&self, records: &mut [pb::UsageRecord]) -> Result<u64, SpoolError> {
        let mut w = lock(&self.writer);
        if records.is_empty() {
            return Ok(w.last_seq);
        }
        let first_seq = w.last_seq + 1;
        let mut buf = Vec::new();
        let mut payloads = Vec::with_capacity(records.len());
        for (seq, record) in (first_seq..).zip(records.iter_mut()) {
            record.seq = seq;
            payloads.push(encode_frame(record, &mut buf)?);
        }
        if u32::try_from(buf.len()).is_err() {
            return Err(SpoolError::BatchTooLarge { size: buf.len() });
        }
        let batch_last = first_seq + records.len() as u64 - 1;

        // Frame offsets are kept as u32, so a segment never grows past 4 GiB.
        let fits = |a: &Active| {
            a.bytes < w.segment_limit && a.bytes + buf.len() as u64 <= u64::from(u32::MAX)
        };
        if !w.active.as_ref().is_some_and(fits) {
            self.rotate(&mut w, first_seq)?;
        }
        let Some(active) = w.active.as_mut() else {
            return Err(missing_active(&self.dir));
        };
        let start_len = active.bytes;
        let written = active.file.write_all(&buf);
        let seg_first = active.first_seq;
        match written {
            Ok(()) => {
                active.bytes = start_len + buf.len() as u64;
                w.last_seq = batch_last;
                w.unsynced = true;
                let mut s = lock(&self.state);
                if let Some(segment) = s.segments.get_mut(&seg_first) {
                    segment.bytes = start_len + buf.len() as u64;
                    segment.last_seq = batch_last;
                    // Below u32::MAX: checked before the write.
                    let ends = payloads.iter().map(|p| (start_len + p.end as u64) as u32);
                    segment.ends.extend(ends);
                }
                s.last_seq = batch_last;
                s.disk_bytes += buf.len() as u64;
                s.pending_bytes += buf.len() as u64;
                s.pending_len += payloads.len();
                let buf = Bytes::from(buf);
                let spooled = (first_seq..)
                    .zip(payloads)
                    .map(|(seq, payload)| SpooledRecord {
                        seq,
                        payload: buf.slice(payload),
                    });
                s.remember(spooled.collect(), self.recent_limit);
                Ok(batch_last)
            }
            Err(source) => {
                // A write that failed part-way may have left some of the batch in the file,
                // so nothing more is written to this segment and the batch's seqs are burned:
                // any that did land keep a seq nobody else gets.
                let path = active.path.clone();
                let len_on_disk = rollback(&mut active.file, &path, start_len);
                w.active = None;
                w.last_seq = batch_last;
                let mut s = lock(&self.state);
                if let Some(segment) = s.segments.get_mut(&seg_first) {
                    segment.bytes = len_on_disk;
                    segment.last_seq = batch_last;
                }
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

    /// Makes everything `append` wrote durable against a crash of the machine (fdatasync of
    /// the active segment; a retired segment was synced when it was retired). A no-op when
    /// nothing was written since the last sync. Blocking I/O.
    ///
    /// After a failed fdatasync the kernel may have dropped the dirty pages while reporting
    /// them clean, so a second sync could not tell: the segment is retired (the next append
    /// starts a new one) and the error returned. Its records stay readable in this process
    /// and are shipped as usual; only their survival of a power loss is in doubt.
    pub fn sync(&self) -> Result<(), SpoolError> {
        let mut w = lock(&self.writer);
        if !std::mem::take(&mut w.unsynced) {
            return Ok(());
        }
        let Some(active) = &w.active else {
            return Ok(());
        };
        match active.file.sync_data() {
            Ok(()) => Ok(()),
            Err(source) => {
                let path = active.path.clone();
                w.active = None;
                Err(SpoolError::Io {
                    op: "sync",
                    path,
                    source,
                })
            }
        }
    }

    /// Whether `append` wrote anything `sync` has not made durable yet.
    pub fn has_unsynced_writes(&self) -> bool {
        lock(&self.writer).unsynced
    }

    /// Up to `max` unacked records with seq > `after`, in seq order. Records older than the
    /// in-memory window are read back from their segment, at most one segment per call:
    /// blocking I/O then, so async callers try `recent_after` first.
    pub fn pending_after(&self, after: u64, max: usize) -> Result<Vec<SpooledRecord>, SpoolError> {
        let read_back = {
            let s = lock(&self.state);
            if let Some(records) = s.recent_after(after, max) {
                return Ok(records);
            }
            s.read_back(after, max)
        };
        // Without one, the records between `after` and the window were burned by a failed
        // append: none are on disk in this process's view.
        match read_back {
            Some(read_back) => read_back.read(),
            None => {
                let s = lock(&self.state);
                let start = s.recent.partition_point(|r| r.seq <= after);
                Ok(s.recent.range(start..).take(max).cloned().collect())
            }
        }
    }

    /// What `pending_after` returns, when it can be served from memory without blocking;
    /// `None` when it has to read a segment.
    pub fn recent_after(&self, after: u64, max: usize) -> Option<Vec<SpooledRecord>> {
        lock(&self.state).recent_after(after, max)
    }

    /// Marks everything <= `seq` as acked: persists the mark, drops those records from memory
    /// and deletes rotated segment files whose records are all acked. The active segment is
    /// kept (to avoid a create + directory fsync per batch) until it rotates.
    /// Blocking I/O: run it on `spawn_blocking`.
    pub fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        let w = lock(&self.writer);
        // An ack past what was ever assigned would delete records appended later.
        let seq = seq.min(w.last_seq);
        if seq <= lock(&self.state).acked_seq {
            return Ok(());
        }
        write_acked(&self.dir, seq)?;
        {
            let mut s = lock(&self.state);
            s.acked_seq = seq;
            while s.recent.front().is_some_and(|r| r.seq <= seq) {
                s.recent.pop_front();
            }
            s.recount();
        }
        self.remove_acked_segments(&w, seq);
        Ok(())
    }

    pub fn pending_len(&self) -> usize {
        lock(&self.state).pending_len
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

    fn rotate(&self, w: &mut Writer, first_seq: u64) -> Result<(), SpoolError> {
        // `sync` only ever syncs the active segment, so the retiring one is synced here.
        if let Some(retired) = w.active.take()
            && std::mem::take(&mut w.unsynced)
            && let Err(error) = retired.file.sync_data()
        {
            // Its records are written and shipped as usual; only a power loss could lose them.
            tracing::error!(path = %retired.path.display(), %error, "cannot sync retired spool segment");
        }
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
        let acked = {
            let mut s = lock(&self.state);
            s.segments.insert(
                first_seq,
                Segment {
                    path: path.clone(),
                    last_seq: first_seq - 1,
                    bytes: 0,
                    ends: Vec::new(),
                },
            );
            s.acked_seq
        };
        w.active = Some(Active {
            file,
            first_seq,
            path,
            bytes: 0,
        });
        self.remove_acked_segments(w, acked);
        Ok(())
    }

    fn remove_acked_segments(&self, w: &Writer, acked: u64) {
        let active_first = w.active.as_ref().map(|a| a.first_seq);
        let done: Vec<(u64, PathBuf)> = lock(&self.state)
            .segments
            .iter()
            .filter(|&(&first, s)| Some(first) != active_first && s.last_seq <= acked)
            .map(|(&first, s)| (first, s.path.clone()))
            .collect();
        let mut removed = Vec::with_capacity(done.len());
        for (first, path) in done {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    // The ack mark already covers it, so a leftover file only costs disk;
                    // the next ack (or the next open) retries.
                    tracing::warn!(path = %path.display(), %error, "cannot delete acked spool segment");
                    continue;
                }
            }
            removed.push(first);
        }
        if !removed.is_empty() {
            let mut s = lock(&self.state);
            for first in removed {
                if let Some(segment) = s.segments.remove(&first) {
                    s.disk_bytes = s.disk_bytes.saturating_sub(segment.bytes);
                }
            }
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

/// Reads one segment, truncating a torn tail. Returns its frames and its length afterwards.
fn recover_segment(path: &Path, first_seq: u64) -> Result<(Frames, u64), SpoolError> {
    let bytes = Bytes::from(fs::read(path).map_err(io_err("read segment", path))?);
    let frames = parse_frames(&bytes, path, 0, first_seq)?;
    if let Some(Torn { valid_len, reason }) = frames.torn {
        // A write that never returned (crash, or a failed append) leaves a torn tail, and so
        // does a machine crash before the appender's sync: the records lost that way were
        // either shipped already (the control plane has them) or within the sync interval
        // the operator chose (`--spool-sync-ms`).
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
        return Ok((
            Frames {
                torn: None,
                ..frames
            },
            valid_len,
        ));
    }
    Ok((frames, bytes.len() as u64))
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
    use prost::Message;

    use crate::metering::spool_frame::FRAME_HEADER;

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

    /// The records as the control plane will read them; each must carry the seq it is
    /// held under.
    fn decoded(records: &[SpooledRecord]) -> Vec<pb::UsageRecord> {
        records
            .iter()
            .map(|r| {
                let record = pb::UsageRecord::decode(r.payload.as_ref()).unwrap();
                assert_eq!(record.seq, r.seq);
                record
            })
            .collect()
    }

    fn ids(records: &[SpooledRecord]) -> Vec<String> {
        decoded(records).into_iter().map(|r| r.request_id).collect()
    }

    fn seqs(records: &[SpooledRecord]) -> Vec<u64> {
        decoded(records).iter().map(|r| r.seq).collect()
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
    fn append_writes_and_sync_makes_durable_what_was_written_since() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.sync().unwrap();
        assert!(!spool.has_unsynced_writes(), "nothing written yet");
        spool.append(&mut records("a", 2)).unwrap();
        assert!(
            spool.has_unsynced_writes(),
            "an append alone does not fdatasync"
        );
        spool.sync().unwrap();
        assert!(!spool.has_unsynced_writes());
        spool.append(&mut records("b", 1)).unwrap();
        assert!(spool.has_unsynced_writes());
        // What the process wrote is in the file even unsynced: a killed gateway keeps it.
        let on_disk: u64 = segment_files(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(on_disk, spool.disk_bytes());
        assert_eq!(
            seqs(&spool.pending_after(0, 10).unwrap()),
            vec![1, 2, 3],
            "shippable before the sync"
        );
    }

    #[test]
    fn append_then_reopen_recovers_pending_and_continues_seq() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            assert_eq!(spool.append(&mut records("a", 3)).unwrap(), 3);
            assert_eq!(spool.append(&mut records("b", 2)).unwrap(), 5);
            assert_eq!(spool.pending_len(), 5);
            assert!(spool.disk_bytes() > 0);
        }
        let spool = Spool::open(dir.path()).unwrap();
        let pending = spool.pending_after(0, 100).unwrap();
        assert_eq!(seqs(&pending), vec![1, 2, 3, 4, 5]);
        assert_eq!(ids(&pending), vec!["a-0", "a-1", "a-2", "b-0", "b-1"]);
        assert_eq!(decoded(&pending)[0].cost_nanos, 1_234);
        assert_eq!((spool.last_seq(), spool.acked_seq()), (5, 0));

        // Seqs continue after restart, in a fresh segment.
        assert_eq!(spool.append(&mut records("c", 1)).unwrap(), 6);
        assert_eq!(segment_files(dir.path()).len(), 2);
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(
            seqs(&spool.pending_after(0, 100).unwrap()),
            vec![1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn append_of_nothing_assigns_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.append(&mut []).unwrap(), 0);
        spool.append(&mut records("a", 2)).unwrap();
        assert_eq!(spool.append(&mut []).unwrap(), 2);
        assert_eq!(spool.pending_len(), 2);
    }

    /// Pages through everything pending, `page` records at a time, as the shipper does.
    fn drain_pages(spool: &Spool, page: usize) -> Vec<SpooledRecord> {
        let mut after = spool.acked_seq();
        let mut all = Vec::new();
        loop {
            let records = spool.pending_after(after, page).unwrap();
            let Some(last) = records.last() else {
                return all;
            };
            assert!(records.len() <= page);
            after = last.seq;
            all.extend(records);
        }
    }

    #[test]
    fn reopening_keeps_only_the_newest_records_of_a_segment_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open_with(dir.path(), SEGMENT_LIMIT, 4).unwrap();
            for i in 0..3 {
                spool.append(&mut records(&format!("r{i}"), 5)).unwrap();
            }
            spool.ack(2).unwrap();
        }
        let spool = Spool::open_with(dir.path(), SEGMENT_LIMIT, 4).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 1);
        let recent: Vec<_> = lock(&spool.state).recent.iter().cloned().collect();
        assert_eq!(seqs(&recent), vec![12, 13, 14, 15]);
        assert!(spool.recent_after(10, 10).is_none());
        assert_eq!(
            seqs(&spool.recent_after(11, 10).unwrap()),
            vec![12, 13, 14, 15]
        );
        let all = drain_pages(&spool, 5);
        assert_eq!(seqs(&all), (3..=15).collect::<Vec<_>>());
        assert_eq!(ids(&all[..3]), vec!["r0-2", "r0-3", "r0-4"]);
    }

    #[test]
    fn a_backlog_beyond_the_memory_window_is_read_back_from_its_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (segment_limit, window) = (400, 8);
        {
            let spool = Spool::open_with(dir.path(), segment_limit, window).unwrap();
            for i in 0..10 {
                spool.append(&mut records(&format!("b{i}"), 5)).unwrap();
            }
            assert!(segment_files(dir.path()).len() > 2, "expected rotation");
            assert_eq!(lock(&spool.state).recent.len(), window);
            assert_eq!(spool.pending_len(), 50);
            // The oldest records are on disk only; the newest are served from memory.
            assert!(spool.recent_after(0, 10).is_none());
            assert_eq!(
                seqs(&spool.recent_after(45, 10).unwrap()),
                vec![46, 47, 48, 49, 50]
            );

            let all = drain_pages(&spool, 7);
            assert_eq!(seqs(&all), (1..=50).collect::<Vec<_>>());
            assert_eq!(
                ids(&all[..6]),
                vec!["b0-0", "b0-1", "b0-2", "b0-3", "b0-4", "b1-0"]
            );
            assert!(decoded(&all).iter().all(|r| r.cost_nanos == 1_234));

            spool.ack(20).unwrap();
            assert_eq!(spool.pending_len(), 30);
            assert_eq!(seqs(&spool.pending_after(0, 3).unwrap()), vec![21, 22, 23]);
        }
        // Reopening keeps only the window in memory, and reads the rest back as before.
        let spool = Spool::open_with(dir.path(), segment_limit, window).unwrap();
        assert_eq!(lock(&spool.state).recent.len(), window);
        assert_eq!(spool.pending_len(), 30);
        assert_eq!(seqs(&drain_pages(&spool, 4)), (21..=50).collect::<Vec<_>>());
        let bytes: u64 = drain_pages(&spool, 100)
            .iter()
            .map(|r| (FRAME_HEADER + r.payload.len()) as u64)
            .sum();
        assert_eq!(spool.pending_bytes(), bytes);
    }

    #[test]
    fn a_segment_changed_under_the_spool_fails_the_read_back_instead_of_returning_wrong_records() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_with(dir.path(), SEGMENT_LIMIT, 2).unwrap();
        spool.append(&mut records("a", 5)).unwrap();
        let segment = dir.path().join(segment_name(1));
        let mut bytes = fs::read(&segment).unwrap();
        bytes[FRAME_HEADER + 2] ^= 0x01;
        fs::write(&segment, &bytes).unwrap();
        assert!(matches!(
            spool.pending_after(0, 10),
            Err(SpoolError::Corrupt { offset: 0, .. })
        ));
        // The window in memory is still served.
        assert_eq!(seqs(&spool.pending_after(3, 10).unwrap()), vec![4, 5]);
    }

    #[test]
    fn pending_bytes_follow_appends_acks_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending_bytes(), 0);
        spool.append(&mut records("a", 10)).unwrap();
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
            let spool = Spool::open_with(dir.path(), 1, RECENT_RECORDS).unwrap();
            for i in 0..4 {
                spool.append(&mut records(&format!("s{i}"), 2)).unwrap();
            }
            assert_eq!(segment_files(dir.path()).len(), 4);
            let before = spool.disk_bytes();

            // seq 3 is mid-segment: only the first segment is fully acked.
            spool.ack(3).unwrap();
            assert_eq!(spool.acked_seq(), 3);
            assert_eq!(
                seqs(&spool.pending_after(0, 100).unwrap()),
                vec![4, 5, 6, 7, 8]
            );
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
        assert_eq!(spool.append(&mut records("after", 1)).unwrap(), 9);
    }

    #[test]
    fn ack_mark_survives_reopen_with_segments_left() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            spool.append(&mut records("a", 5)).unwrap();
            spool.ack(2).unwrap();
        }
        let mark = fs::read_to_string(dir.path().join(ACKED_FILE)).unwrap();
        assert_eq!(mark.trim().parse::<u64>().unwrap(), 2);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(seqs(&spool.pending_after(0, 100).unwrap()), vec![3, 4, 5]);
        assert_eq!(spool.acked_seq(), 2);
    }

    #[test]
    fn ack_past_last_seq_is_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(&mut records("a", 2)).unwrap();
        spool.ack(1_000).unwrap();
        assert_eq!(spool.acked_seq(), 2);
        // Records appended later are not covered by the earlier, over-reaching ack.
        spool.append(&mut records("b", 1)).unwrap();
        assert_eq!(seqs(&spool.pending_after(0, 10).unwrap()), vec![3]);
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
                spool.append(&mut records("ok", 3)).unwrap();
                good_len = spool.disk_bytes();
            }
            let segment = dir.path().join(segment_name(1));
            append_bytes(&segment, &tail);

            let spool = Spool::open(dir.path()).unwrap();
            assert_eq!(spool.pending_len(), 3, "{what}");
            assert_eq!(fs::metadata(&segment).unwrap().len(), good_len, "{what}");
            assert_eq!(spool.disk_bytes(), good_len, "{what}");
            assert_eq!(spool.append(&mut records("next", 1)).unwrap(), 4, "{what}");
            drop(spool);
            let spool = Spool::open(dir.path()).unwrap();
            assert_eq!(
                seqs(&spool.pending_after(0, 10).unwrap()),
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
            spool.append(&mut records("a", 2)).unwrap();
        }
        // A crash right after creating the next segment, mid-way through its first frame.
        let next = dir.path().join(segment_name(3));
        fs::write(&next, [7, 0, 0]).unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending_len(), 2);
        assert!(!next.exists());
        assert_eq!(spool.append(&mut records("b", 1)).unwrap(), 3);
    }

    #[test]
    fn torn_tail_left_by_a_failed_append_in_an_earlier_segment_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            spool.append(&mut records("a", 2)).unwrap();
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
        assert_eq!(seqs(&spool.pending_after(0, 10).unwrap()), vec![1, 2, 5]);
        assert_eq!(spool.append(&mut records("c", 1)).unwrap(), 6);
    }

    #[test]
    fn corrupt_middle_frame_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(dir.path()).unwrap();
            spool.append(&mut records("a", 3)).unwrap();
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
        for seqs in [[1, 2, 2], [1, 2, 4], [2, 3, 4]] {
            let mut bytes = Vec::new();
            for seq in seqs {
                let mut r = record("dup");
                r.seq = seq;
                encode_frame(&r, &mut bytes).unwrap();
            }
            fs::write(dir.path().join(segment_name(1)), &bytes).unwrap();
            assert!(
                matches!(Spool::open(dir.path()), Err(SpoolError::Corrupt { .. })),
                "{seqs:?}"
            );
        }
    }

    #[test]
    fn rotation_starts_segments_named_by_first_seq() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 600;
        let spool = Spool::open_with(dir.path(), limit, RECENT_RECORDS).unwrap();
        for i in 0..50 {
            spool.append(&mut [record(&format!("r{i}"))]).unwrap();
        }
        let files = list_segments(dir.path()).unwrap();
        assert!(files.len() > 2, "expected rotation, got {files:?}");
        assert_eq!(files[0].0, 1);
        let mut total = 0;
        for (i, (first_seq, path)) in files.iter().enumerate() {
            let bytes = Bytes::from(fs::read(path).unwrap());
            total += bytes.len() as u64;
            let frames = parse_frames(&bytes, path, 0, *first_seq).unwrap();
            assert!(frames.torn.is_none());
            let recs = frames.records;
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
            seqs(&spool.pending_after(0, 100).unwrap()),
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
            spool.append(&mut [r]).unwrap();
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
        spool.append(&mut records("p", 10)).unwrap();

        let mut after = 0;
        let mut pages = Vec::new();
        loop {
            let page = spool.pending_after(after, 4).unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            pages.push(seqs(&page));
        }
        assert_eq!(pages, vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]]);
        assert!(spool.pending_after(10, 4).unwrap().is_empty());
        assert_eq!(
            seqs(&spool.pending_after(100, 4).unwrap()),
            Vec::<u64>::new()
        );

        spool.ack(6).unwrap();
        assert_eq!(seqs(&spool.pending_after(0, 2).unwrap()), vec![7, 8]);
        assert_eq!(seqs(&spool.pending_after(8, 100).unwrap()), vec![9, 10]);
        assert!(spool.pending_after(0, 0).unwrap().is_empty());
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
