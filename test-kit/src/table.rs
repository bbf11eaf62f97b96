//! The benches' result table: one row per figure, `| figure | measured | limit / comparison |
//! result |`, columns as wide as their widest cell.

use std::fmt::Write as _;

/// A verdict cell: `PASS` or `FAIL`.
pub fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

/// Rows of (figure, measured, limit or comparison, result).
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    /// Add a row.
    pub fn row(
        &mut self,
        figure: impl Into<String>,
        measured: impl Into<String>,
        limit: impl Into<String>,
        result: &str,
    ) {
        self.rows.push([
            figure.into(),
            measured.into(),
            limit.into(),
            result.to_owned(),
        ]);
    }

    /// A blank line, `title`, the header, a rule and the rows, each line ending in a newline.
    pub fn render(&self, title: &str) -> String {
        let mut widths = [6, 8, 18, 6];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: [&str; 4]| {
            let _ = writeln!(
                out,
                "| {:<w0$} | {:>w1$} | {:<w2$} | {:<w3$} |",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            );
        };
        let _ = writeln!(out, "\n{title}");
        line(
            &mut out,
            ["figure", "measured", "limit / comparison", "result"],
        );
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
        let _ = writeln!(out, "|{}|", rule.join("|"));
        for [a, b, c, d] in &self.rows {
            line(&mut out, [a, b, c, d]);
        }
        out
    }
}
