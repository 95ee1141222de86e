//! Budget windows: UTC day, ISO week (Monday 00:00 UTC), calendar month, or lifetime.
//! Every function takes the clock as an argument so the boundaries are testable.

use time::{Month, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Daily,
    Weekly,
    Monthly,
    Lifetime,
}

impl Window {
    pub const NAMES: &'static str = "daily, weekly, monthly or lifetime";

    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "daily" => Some(Window::Daily),
            "weekly" => Some(Window::Weekly),
            "monthly" => Some(Window::Monthly),
            "lifetime" => Some(Window::Lifetime),
            _ => None,
        }
    }

    /// A key's `limit_reset`: daily / weekly / monthly, anything else (none) is lifetime.
    pub fn from_limit_reset(reset: Option<&str>) -> Window {
        reset.and_then(Window::parse).unwrap_or(Window::Lifetime)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Daily => "daily",
            Window::Weekly => "weekly",
            Window::Monthly => "monthly",
            Window::Lifetime => "lifetime",
        }
    }

    /// `[start, end)` of the window containing `now_ms`, in unix ms; a lifetime window is
    /// `[0, 0)` where `end == 0` means it never ends.
    pub fn bounds(self, now_ms: i64) -> (i64, i64) {
        let now = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let day = now.replace_time(time::Time::MIDNIGHT);
        let (start, end) = match self {
            Window::Lifetime => return (0, 0),
            Window::Daily => (day, day + time::Duration::days(1)),
            Window::Weekly => {
                let monday =
                    day - time::Duration::days(i64::from(day.weekday().number_days_from_monday()));
                (monday, monday + time::Duration::weeks(1))
            }
            Window::Monthly => {
                let first = day.replace_day(1).unwrap_or(day);
                let next = if first.month() == Month::December {
                    first
                        .replace_year(first.year() + 1)
                        .and_then(|t| t.replace_month(Month::January))
                } else {
                    first.replace_month(first.month().next())
                };
                (first, next.unwrap_or(first + time::Duration::days(31)))
            }
        };
        (ms(start), ms(end))
    }
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::timefmt::{iso, parse_iso};

    fn at(s: &str) -> i64 {
        parse_iso("t", s).unwrap()
    }

    fn bounds(w: Window, now: &str) -> (String, String) {
        let (s, e) = w.bounds(at(now));
        (iso(s), iso(e))
    }

    #[test]
    fn daily_rolls_over_at_utc_midnight() {
        assert_eq!(
            bounds(Window::Daily, "2026-12-06T23:59:59.999Z"),
            ("2026-12-06T00:00:00Z".into(), "2026-12-07T00:00:00Z".into())
        );
        assert_eq!(
            bounds(Window::Daily, "2026-12-07T00:00:00Z"),
            ("2026-12-07T00:00:00Z".into(), "2026-12-08T00:00:00Z".into())
        );
        // The last millisecond of a day belongs to it, the next one to the next day.
        let (_, end) = Window::Daily.bounds(at("2026-12-06T12:00:00Z"));
        assert_eq!(Window::Daily.bounds(end - 1).0, at("2026-12-06T00:00:00Z"));
        assert_eq!(Window::Daily.bounds(end).0, end);
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2026-12-06 is a Sunday: still the week that began on Monday 2026-11-30.
        assert_eq!(
            bounds(Window::Weekly, "2026-12-06T23:59:59.999Z"),
            ("2026-11-30T00:00:00Z".into(), "2026-12-07T00:00:00Z".into())
        );
        // Monday 00:00 starts a new week.
        assert_eq!(
            bounds(Window::Weekly, "2026-12-07T00:00:00Z"),
            ("2026-12-07T00:00:00Z".into(), "2026-12-14T00:00:00Z".into())
        );
        // A week that spans a year boundary.
        assert_eq!(
            bounds(Window::Weekly, "2027-01-01T08:00:00Z"),
            ("2026-12-28T00:00:00Z".into(), "2027-01-04T00:00:00Z".into())
        );
    }

    #[test]
    fn months_roll_over_on_the_first_including_december_and_february() {
        assert_eq!(
            bounds(Window::Monthly, "2026-12-31T23:59:59.999Z"),
            ("2026-12-01T00:00:00Z".into(), "2027-01-01T00:00:00Z".into())
        );
        assert_eq!(
            bounds(Window::Monthly, "2027-01-01T00:00:00Z"),
            ("2027-01-01T00:00:00Z".into(), "2027-02-01T00:00:00Z".into())
        );
        assert_eq!(
            bounds(Window::Monthly, "2028-02-29T12:00:00Z"),
            ("2028-02-01T00:00:00Z".into(), "2028-03-01T00:00:00Z".into())
        );
    }

    #[test]
    fn lifetime_never_rolls_and_names_parse() {
        assert_eq!(Window::Lifetime.bounds(at("2026-12-06T10:00:00Z")), (0, 0));
        for w in [
            Window::Daily,
            Window::Weekly,
            Window::Monthly,
            Window::Lifetime,
        ] {
            assert_eq!(Window::parse(w.as_str()), Some(w));
        }
        assert_eq!(Window::parse("yearly"), None);
        assert_eq!(Window::from_limit_reset(None), Window::Lifetime);
        assert_eq!(Window::from_limit_reset(Some("weekly")), Window::Weekly);
    }
}
