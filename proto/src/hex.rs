//! Lowercase hex digits written straight into a `String`: `hex::encode` collects a `char`
//! iterator (~2 000 instructions for a SHA-256 digest), and digests are written on every
//! gateway request (key hashes, conversation ids).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(2 * bytes.len());
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_hex_encode_writes() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut out = String::from("x-");
        push_hex(&mut out, &bytes);
        assert_eq!(out, format!("x-{}", hex::encode(&bytes)));
    }
}
