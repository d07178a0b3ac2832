//! Framing of one record in a log segment or snapshot file, and the rule
//! that tells a torn append from corruption.
//!
//! A record is a 12-byte header and a payload:
//!
//! ```text
//! len: u32 LE | crc: u32 LE = crc32c(payload) | hcrc: u32 LE = crc32c(len, crc) | payload
//! ```
//!
//! The header has its own checksum so that a damaged length is never
//! trusted: without it a flipped length byte in the middle of a file could
//! point past the end and pass for a torn tail.

/// Bytes before each payload.
pub const HEADER: usize = 12;

/// Appends `payload` as one framed record.
pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(payload).to_le_bytes();
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len);
    head[4..].copy_from_slice(&crc);
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32c::crc32c(&head).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why the bytes at an offset are not an intact record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside the header or the payload.
    Short,
    /// The header's own checksum does not match.
    Header,
    /// The header is intact but its length is zero or over the limit.
    Length(u32),
    /// The payload's checksum does not match.
    Payload,
}

impl Damage {
    /// Describes the damage for an error message.
    pub fn describe(self, limit: usize) -> String {
        match self {
            Damage::Short => "the file ends inside a record".into(),
            Damage::Header => "record header checksum mismatch".into(),
            Damage::Length(len) => {
                format!("record length {len} is zero or over the limit of {limit} bytes")
            }
            Damage::Payload => "record payload checksum (CRC32C) mismatch".into(),
        }
    }
}

/// The payload of the record at `at`, if the record there is intact.
pub fn record_at(buf: &[u8], at: usize, limit: usize) -> Result<&[u8], Damage> {
    let rest = &buf[at..];
    if rest.len() < HEADER {
        return Err(Damage::Short);
    }
    let word = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().expect("4 bytes"));
    let (len, crc, hcrc) = (word(0), word(4), word(8));
    if crc32c::crc32c(&rest[..8]) != hcrc {
        return Err(Damage::Header);
    }
    if len == 0 || len as usize > limit {
        return Err(Damage::Length(len));
    }
    let payload = rest
        .get(HEADER..HEADER + len as usize)
        .ok_or(Damage::Short)?;
    if crc32c::crc32c(payload) != crc {
        return Err(Damage::Payload);
    }
    Ok(payload)
}

/// Whether damage at `at` can be what a crash during an unsynced append
/// leaves: the file cut short or filled with zeros past some point, never a
/// complete record after the damage. An intact header with a bad length was
/// written whole, so it is never torn. Scanning every later offset costs one
/// 8-byte checksum each, and runs only when recovery meets damage.
pub fn is_torn_tail(buf: &[u8], at: usize, damage: Damage, limit: usize) -> bool {
    if matches!(damage, Damage::Length(_)) {
        return false;
    }
    (at + 1..buf.len()).all(|p| record_at(buf, p, limit).is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_record_reads_back_and_any_flipped_byte_is_caught() {
        let mut buf = Vec::new();
        frame(&mut buf, b"hello, log");
        assert_eq!(record_at(&buf, 0, 64), Ok(&b"hello, log"[..]));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(record_at(&bad, 0, 64).is_err(), "flip at {i} passed");
        }
        assert_eq!(record_at(&buf[..buf.len() - 1], 0, 64), Err(Damage::Short));
        assert_eq!(record_at(&buf, 0, 4), Err(Damage::Length(10)));
    }

    #[test]
    fn zeros_are_a_torn_tail_but_a_record_after_damage_is_not() {
        let mut buf = Vec::new();
        frame(&mut buf, b"first");
        let second = buf.len();
        frame(&mut buf, b"second");
        let mut zeroed = buf.clone();
        zeroed[second..].fill(0);
        let d = record_at(&zeroed, second, 64).unwrap_err();
        assert!(is_torn_tail(&zeroed, second, d, 64));
        let mut flipped = buf.clone();
        flipped[2] ^= 1;
        let d = record_at(&flipped, 0, 64).unwrap_err();
        assert!(!is_torn_tail(&flipped, 0, d, 64));
    }
}
