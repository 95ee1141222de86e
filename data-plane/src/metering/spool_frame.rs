//! The spool's frame format: `[u32 LE len][u32 LE crc32(payload)][payload]`, the payload a
//! prost-encoded `UsageRecord`, and the reader that tells a torn tail (a write that never
//! returned) from corruption in the middle of a segment.

use std::ops::Range;
use std::path::Path;

use bytes::Bytes;
use prost::Message;
use switchyard_proto::pb;

use super::spool::SpoolError;

pub(super) const FRAME_HEADER: usize = 8;

/// An unacked record as the spool holds and the shipper sends it: its prost encoding (a
/// slice of the buffer it was written from or read back into), which is what a
/// `UsageBatch` carries for it on the wire. A decoded record costs ~3x the memory and a
/// clone and a re-encode on the way out, and would drop fields a newer version wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct SpooledRecord {
    pub seq: u64,
    pub payload: Bytes,
}

impl SpooledRecord {
    /// The same record in a buffer of its own, so keeping it does not keep the rest of a
    /// whole segment read at start-up alive.
    pub(super) fn detached(&self) -> SpooledRecord {
        SpooledRecord {
            seq: self.seq,
            payload: Bytes::copy_from_slice(&self.payload),
        }
    }
}

/// Appends `record`'s frame to `buf`; returns where its payload lies in `buf`.
pub(super) fn encode_frame(
    record: &pb::UsageRecord,
    buf: &mut Vec<u8>,
) -> Result<Range<usize>, SpoolError> {
    let size = record.encoded_len();
    let len = u32::try_from(size).map_err(|_| SpoolError::RecordTooLarge { size })?;
    let header = buf.len();
    buf.reserve(FRAME_HEADER + size);
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    // `encode` would measure the record a second time (a walk over every field) to check
    // the room that `reserve` has just made.
    record.encode_raw(buf);
    let payload = header + FRAME_HEADER..buf.len();
    let crc = crc32fast::hash(&buf[payload.clone()]);
    buf[header..header + 4].copy_from_slice(&len.to_le_bytes());
    buf[header + 4..header + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(payload)
}

/// Whole frames read from a run of a segment.
#[derive(Debug, Default)]
pub(super) struct Frames {
    pub records: Vec<SpooledRecord>,
    /// End offset of each record's frame in the segment.
    pub ends: Vec<u64>,
    /// Set when the run ends in a partial or damaged final frame.
    pub torn: Option<Torn>,
}

#[derive(Debug)]
pub(super) struct Torn {
    pub valid_len: u64,
    pub reason: &'static str,
}

/// Parses `bytes`, which start at byte `base` of the segment at `path`, as frames whose
/// records carry consecutive seqs from `first_seq`: a segment is only ever written by whole
/// batches of consecutive seqs, and a failed write retires it. Each record is decoded once
/// to check it (and its seq) but kept as the slice of `bytes` it was read from.
pub(super) fn parse_frames(
    bytes: &Bytes,
    path: &Path,
    base: u64,
    first_seq: u64,
) -> Result<Frames, SpoolError> {
    let mut frames = Frames::default();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let at = base + pos as u64;
        let torn = |reason| {
            Some(Torn {
                valid_len: at,
                reason,
            })
        };
        let corrupt = |reason: String| SpoolError::Corrupt {
            path: path.to_path_buf(),
            offset: at,
            reason,
        };
        // Zeros past the last good frame are what a crash leaves on filesystems that extend
        // the file before its data blocks land.
        let zero_tail = || rest.iter().all(|&b| b == 0);
        let Some((header, body)) = rest.split_at_checked(FRAME_HEADER) else {
            frames.torn = torn("partial frame header");
            return Ok(frames);
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = body.get(..len) else {
            frames.torn = torn("frame extends past end of file");
            return Ok(frames);
        };
        if crc32fast::hash(payload) != crc {
            if body.len() == len || zero_tail() {
                frames.torn = torn("checksum mismatch in final frame");
                return Ok(frames);
            }
            return Err(corrupt("checksum mismatch".to_owned()));
        }
        // Never written (every record has a seq), but it is what a zeroed header decodes to.
        if len == 0 {
            if zero_tail() {
                frames.torn = torn("zero-filled tail");
                return Ok(frames);
            }
            return Err(corrupt("empty frame".to_owned()));
        }
        let record = pb::UsageRecord::decode(payload)
            .map_err(|e| corrupt(format!("undecodable record: {e}")))?;
        let expected = first_seq + frames.records.len() as u64;
        if record.seq != expected {
            return Err(corrupt(format!(
                "seq {} where seq {expected} belongs",
                record.seq
            )));
        }
        frames.records.push(SpooledRecord {
            seq: record.seq,
            payload: bytes.slice(pos + FRAME_HEADER..pos + FRAME_HEADER + len),
        });
        pos += FRAME_HEADER + len;
        frames.ends.push(base + pos as u64);
    }
    Ok(frames)
}
