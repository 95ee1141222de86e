//! RFC 3339 timestamps for JSON, from and to the store's unix milliseconds.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;

pub fn iso(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn parse_iso(field: &str, text: &str) -> Result<i64, ApiError> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        ApiError::BadRequest(format!(
            "`{field}` must be an RFC 3339 timestamp such as 2027-01-31T00:00:00Z: {e}"
        ))
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::BadRequest(format!("`{field}` is out of range")))
}

/// Start of the current UTC day, ISO week (Monday) and month, in unix ms.
pub fn window_starts(now_ms: i64) -> [i64; 3] {
    let now = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let day = now.replace_time(time::Time::MIDNIGHT);
    let week = day - time::Duration::days(i64::from(day.weekday().number_days_from_monday()));
    let month = day.replace_day(1).unwrap_or(day);
    let ms = |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    [ms(day), ms(week), ms(month)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_at_utc_day_monday_and_first_of_month() {
        // 2026-11-25T15:30:00Z is a Wednesday.
        let now = parse_iso("t", "2026-11-25T15:30:00Z").unwrap();
        let [day, week, month] = window_starts(now);
        assert_eq!(iso(day), "2026-11-25T00:00:00Z");
        assert_eq!(iso(week), "2026-11-23T00:00:00Z");
        assert_eq!(iso(month), "2026-11-01T00:00:00Z");
    }

    #[test]
    fn rejects_non_rfc3339() {
        assert!(
            parse_iso("expires_at", "tomorrow")
                .unwrap_err()
                .to_string()
                .contains("expires_at")
        );
    }
}
