//! The `x-request-id` given to a request that arrives without one.

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// A time-ordered (v7) UUID, like every other id here. tower-http's `MakeRequestUuid` (a v4)
/// goes through `core::fmt` into a `String` and parses that back; this encodes into a stack
/// buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeUuid;

impl MakeRequestId for MakeUuid {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let mut buffer = uuid::Uuid::encode_buffer();
        let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buffer);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::MakeUuid;
    use tower_http::request_id::MakeRequestId as _;

    #[test]
    fn ids_are_distinct_v7_uuids() {
        let request = axum::http::Request::new(());
        let mut make = MakeUuid;
        let ids: Vec<uuid::Uuid> = (0..2)
            .map(|_| {
                let id = make.make_request_id(&request).unwrap();
                let text = id.header_value().to_str().unwrap();
                assert_eq!(text.len(), 36, "{text}");
                uuid::Uuid::parse_str(text).unwrap()
            })
            .collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert_ne!(ids[0], ids[1]);
    }
}
