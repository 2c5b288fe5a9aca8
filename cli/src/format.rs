//! Human-readable figures and aligned tables for the terminal.

use std::time::{SystemTime, UNIX_EPOCH};

use zeta_proto::v1;

/// Bytes in decimal units (`103.4 MB`), as macOS's Finder and Activity Monitor show them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A span of seconds: `42 s`, `3 min`, `2 h 5 min`, `3 d 4 h`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// How long ago a Unix time was (`12 s ago`), or `-` for an unset (zero) time.
pub fn ago(unix: i64) -> String {
    if unix <= 0 {
        return "-".into();
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(unix);
    format!("{} ago", duration((now - unix) as f64))
}

/// `n what`, with an `s` unless `n` is 1.
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// A model state in lower case, as the table shows it.
pub fn state(s: i32) -> &'static str {
    match v1::ModelState::try_from(s).unwrap_or(v1::ModelState::Unspecified) {
        v1::ModelState::Unloaded => "unloaded",
        v1::ModelState::Downloading => "downloading",
        v1::ModelState::Loading => "loading",
        v1::ModelState::Loaded => "loaded",
        v1::ModelState::Failed => "failed",
        v1::ModelState::Unloading => "unloading",
        v1::ModelState::Unspecified => "unknown",
    }
}

/// Rows under a header, each column padded to its widest cell; the last column is not padded,
/// so a long path there never wraps the others.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    // Names come from requests and config files: a newline or a terminal escape in one is shown
    // as its escape, not obeyed.
    let rows: Vec<Vec<String>> =
        rows.iter().map(|r| r.iter().map(|c| zeta_proto::logging::escape_controls(c).into_owned()).collect()).collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(103_400_000), "103.4 MB");
        assert_eq!(bytes(2_500_000_000), "2.5 GB");
        assert_eq!(duration(42.9), "42 s");
        assert_eq!(duration(3.0 * 3600.0 + 120.0), "3 h 2 min");
        assert_eq!(ago(0), "-");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONG"], &[vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]]);
        assert_eq!(t, "A    LONG\nxyz  1\nq    22\n");
        // A name holding a newline or a terminal escape stays one row, shown escaped.
        let t = table(&["A", "B"], &[vec!["x\ny".into(), "\u{1b}[2J".into()]]);
        assert_eq!(t, "A     B\nx\\ny  \\u{1b}[2J\n");
    }
}
