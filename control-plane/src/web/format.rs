//! Display helpers for console pages.

use crate::api::timefmt::iso;

/// Nano-USD as dollars: at least two decimals, at most nine, trailing zeros trimmed.
pub fn usd(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let whole = n / 1_000_000_000;
    let frac = format!("{:09}", n % 1_000_000_000);
    let trimmed = frac.trim_end_matches('0');
    let frac = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("{sign}${whole}.{frac}")
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn when(ms: i64) -> String {
    let text = iso(ms);
    let text = text
        .split('.')
        .next()
        .unwrap_or(&text)
        .trim_end_matches('Z');
    format!("{} UTC", text.replacen('T', " ", 1))
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A credential shown as bullets and its last four characters.
pub fn mask(secret: Option<&str>) -> String {
    match secret {
        None | Some("") => "not set".to_owned(),
        Some(s) if s.chars().count() < 12 => "••••••••".to_owned(),
        Some(s) => {
            let tail: String = s
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("••••••••{tail}")
        }
    }
}

/// A per-million-tokens price (nano-USD per Mtok) as `$x / M`.
pub fn per_mtok(nanos: i64) -> String {
    format!("{} / M", usd(nanos))
}

pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Escapes text for SVG/HTML built by hand.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(1_500_000_000), "$1.50");
        assert_eq!(usd(123), "$0.000000123");
        assert_eq!(usd(-20_000_000), "-$0.02");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(mask(Some("sk-abcdefghijklmnop")), "••••••••mnop");
        assert_eq!(mask(None), "not set");
        assert_eq!(url_encode("/keys?a=b c"), "/keys%3Fa%3Db%20c");
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
    }
}
