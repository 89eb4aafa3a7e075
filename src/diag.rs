//! Source spans and rendered diagnostics.
//!
//! Every text input (rcfiles, maps, settings) reports problems as a
//! [`Diagnostic`] with a file, a byte span and a message. [`Diagnostic::render`]
//! prints them rustc-style so that `postroom check` points at the spot.
//! This module is a leaf: it imports nothing from the project.

use std::fmt::Write as _;

/// A byte range `start..end` inside one source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// A span covering `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// 1-based line and column (in bytes, tabs count as one) of `self.start` in `src`.
    pub fn line_col(&self, src: &[u8]) -> (usize, usize) {
        let start = self.start.min(src.len());
        let before = &src[..start];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        (line, start - line_start + 1)
    }
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The item is skipped or the input is refused.
    Error,
    /// The input works, but probably not as meant.
    Warning,
}

/// One problem found in a text input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file name as it should be shown.
    pub file: String,
    /// Where in the file.
    pub span: Span,
    /// One lowercase line saying what is wrong.
    pub message: String,
    /// Further lines of explanation (`= note: ...`).
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span` of `file`.
    pub fn error(file: impl Into<String>, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            span,
            message: message.into(),
            notes: Vec::new(),
        }
    }

    /// A warning at `span` of `file`.
    pub fn warning(file: impl Into<String>, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, span, message)
        }
    }

    /// Adds a note line.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// `FILE:LINE:COL: message`, the one-line form used in logs.
    pub fn short(&self, src: &[u8]) -> String {
        let (line, col) = self.span.line_col(src);
        format!("{}:{}:{}: {}", self.file, line, col, self.message)
    }

    /// The rustc-style rendering: `error: msg`, `--> file:line:col`, the
    /// source line (tabs kept) and carets under the span (clipped to the line).
    pub fn render(&self, src: &[u8]) -> String {
        let (line, col) = self.span.line_col(src);
        let start = self.span.start.min(src.len());
        let line_start = src[..start]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let line_end = src[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(src.len(), |p| start + p);
        let text = String::from_utf8_lossy(&src[line_start..line_end]);
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = String::new();
        let _ = writeln!(out, "{kind}: {}", self.message);
        let _ = writeln!(out, "{pad}--> {}:{}:{}", self.file, line, col);
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{line} | {text}");
        // Keep tabs under tabs so the carets line up in a terminal.
        let lead: String = src[line_start..start]
            .iter()
            .map(|&b| if b == b'\t' { '\t' } else { ' ' })
            .collect();
        let width = self.span.end.min(line_end).saturating_sub(start).max(1);
        let _ = writeln!(out, "{pad} | {lead}{}", "^".repeat(width));
        for note in &self.notes {
            let _ = writeln!(out, "{pad} = note: {note}");
        }
        out
    }
}

/// `text` for one line of output (a log line, a header field, a message
/// to the user): control characters, line ends among them, shown as `?`.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = b"a\nbc\n\td";
        assert_eq!(Span::new(0, 1).line_col(src), (1, 1));
        assert_eq!(Span::new(3, 4).line_col(src), (2, 2));
        assert_eq!(Span::new(6, 7).line_col(src), (3, 2));
    }

    #[test]
    fn render_underlines_span_and_keeps_tabs() {
        let src = b":0\n\t* bad(\nfolder\n";
        let d = Diagnostic::error("rc", Span::new(6, 10), "unbalanced parenthesis");
        let got = d.render(src);
        let want = "error: unbalanced parenthesis\n --> rc:2:4\n  |\n2 | \t* bad(\n  | \t  ^^^^\n";
        assert_eq!(got, want);
    }
}
