//! Generation ids: a UUIDv7 shown to clients as `gen-<uuid>`.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

const PREFIX: &str = "gen-";

/// The id of one generation (one client request), unique across all gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GenerationId(Uuid);

impl GenerationId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn uuid(&self) -> Uuid {
        self.0
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl Default for GenerationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for GenerationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Encoded into a buffer rather than through `write!`'s arguments: ids are written
        // two or three times for every request.
        let mut buf = Uuid::encode_buffer();
        f.write_str(PREFIX)?;
        f.write_str(self.0.hyphenated().encode_lower(&mut buf))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("generation ids look like gen-<uuid>")]
pub struct GenerationIdError;

impl FromStr for GenerationId {
    type Err = GenerationIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = s.strip_prefix(PREFIX).unwrap_or(s);
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| GenerationIdError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = GenerationId::new();
        let text = id.to_string();
        assert!(text.starts_with("gen-"));
        assert_eq!(text.parse::<GenerationId>().unwrap(), id);
        assert_eq!(id.uuid().get_version_num(), 7);
    }

    #[test]
    fn rejects_garbage() {
        assert!("gen-nope".parse::<GenerationId>().is_err());
    }
}
