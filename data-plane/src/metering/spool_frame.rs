//! The spool's frame format: `[u32 LE len][u32 LE crc32(payload)][payload]`, the payload a
//! prost-encoded `UsageRecord`, and the reader that tells a torn tail (a write that never
//! returned) from corruption in the middle of a segment.

use std::path::Path;

use prost::Message;
use switchyard_proto::pb;

use super::spool::SpoolError;

pub(super) const FRAME_HEADER: usize = 8;

pub(super) fn encode_frame(record: &pb::UsageRecord, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
    let payload = record.encode_to_vec();
    let len = u32::try_from(payload.len()).map_err(|_| SpoolError::RecordTooLarge {
        size: payload.len(),
    })?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// Whole frames read from a run of a segment.
#[derive(Debug, Default)]
pub(super) struct Frames {
    pub records: Vec<pb::UsageRecord>,
    /// End offset of each record's frame in the segment. Kept rather than recomputed from
    /// the decoded record: a record written by a newer version may carry fields this one
    /// drops, so re-encoding it would give a shorter length than the one on disk.
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
/// batches of consecutive seqs, and a failed write retires it.
pub(super) fn parse_frames(
    bytes: &[u8],
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
        frames.records.push(record);
        pos += FRAME_HEADER + len;
        frames.ends.push(base + pos as u64);
    }
    Ok(frames)
}
