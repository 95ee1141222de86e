//! Server-rendered SVG charts: no scripts, readable without colour (every bar has a title
//! and the data is also shown as a table next to the chart).

use std::fmt::Write;

use super::format::escape;

/// A vertical bar chart of `(label, value, tooltip)`; `values` are scaled to the largest.
pub fn bars(title: &str, points: &[(String, i64, String)]) -> String {
    let (w, h, pad) = (600.0_f64, 160.0_f64, 20.0_f64);
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let n = points.len().max(1) as f64;
    let slot = (w - 2.0 * pad) / n;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}" preserveAspectRatio="none"><title>{t}</title><line x1="{pad}" y1="{base}" x2="{x2}" y2="{base}" class="axis"/>"#,
        t = escape(title),
        base = h - pad,
        x2 = w - pad,
    );
    for (i, (label, value, tip)) in points.iter().enumerate() {
        let bh = ((*value as f64) / max * (h - 2.0 * pad)).max(if *value > 0 { 1.0 } else { 0.0 });
        let x = pad + i as f64 * slot + slot * 0.15;
        let y = h - pad - bh;
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" class="bar"><title>{l}: {tip}</title></rect>"#,
            bw = slot * 0.7,
            l = escape(label),
            tip = escape(tip),
        );
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            svg,
            r#"<text x="{pad}" y="{y}" class="tick">{a}</text><text x="{x}" y="{y}" class="tick" text-anchor="end">{b}</text>"#,
            y = h - 4.0,
            x = w - pad,
            a = escape(&first.0),
            b = escape(&last.0),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars of `(label, value, shown value)`, largest first.
pub fn hbars(title: &str, rows: &[(String, i64, String)]) -> String {
    let (w, row_h) = (600.0_f64, 28.0_f64);
    let h = row_h * rows.len().max(1) as f64;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        r#"<svg class="chart hchart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
    for (i, (label, value, shown)) in rows.iter().enumerate() {
        let y = i as f64 * row_h;
        let bw = ((*value as f64) / max * (w * 0.45)).max(if *value > 0 { 2.0 } else { 0.0 });
        let _ = write!(
            svg,
            r#"<text x="0" y="{ty:.1}" class="label">{l}</text><rect x="{bx}" y="{ry:.1}" width="{bw:.1}" height="{rh:.1}" class="bar"/><text x="{vx:.1}" y="{ty:.1}" class="value">{v}</text>"#,
            ty = y + row_h * 0.65,
            l = escape(&truncate(label, 28)),
            bx = w * 0.4,
            ry = y + row_h * 0.2,
            rh = row_h * 0.6,
            vx = w * 0.4 + bw + 6.0,
            v = escape(shown),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal meter of `percent` (0-100, drawn capped at 100) for spend against a limit;
/// red past 100 %. Sized by SVG attributes: the CSP forbids inline styles.
pub fn meter(title: &str, percent: f64) -> String {
    let p = if percent.is_finite() {
        percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let class = if percent >= 100.0 { "bar over" } else { "bar" };
    format!(
        r#"<svg class="meter" viewBox="0 0 200 14" role="img" aria-label="{t}"><title>{t}</title><rect x="0" y="2" width="200" height="10" class="track"/><rect x="0" y="2" width="{w:.1}" height="10" class="{class}"/></svg>"#,
        t = escape(title),
        w = p * 2.0,
    )
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn charts_escape_labels_and_scale() {
        let svg = super::bars(
            "Spend",
            &[
                ("<a>".into(), 5, "$5".into()),
                ("b".into(), 10, "$10".into()),
            ],
        );
        assert!(svg.contains("&lt;a&gt;") && !svg.contains("<a>"));
        assert!(svg.contains(r#"height="120.0""#));
        let svg = super::meter("$5 of $10", 50.0);
        assert!(svg.contains(r#"width="100.0""#) && !svg.contains("over"));
        assert!(super::meter("x", 250.0).contains(r#"width="200.0" height="10" class="bar over""#));
        let svg = super::hbars("Top", &[]);
        assert!(svg.starts_with("<svg"));
    }
}
