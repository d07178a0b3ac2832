//! Input files as the user gave them: reading them as UTF-8 text (a bad byte
//! is reported at its line and column), and telling a trace from a scenario
//! by the file's name.

use std::path::Path;

/// Reads `path` as UTF-8 text. The error names the file, and for a byte
/// that is not UTF-8, its `line:col` (the column counts the characters
/// before it on its line, plus one).
pub fn read_text(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    utf8_text(bytes).map_err(|(line, col)| format!("{shown}:{line}:{col}: {NOT_UTF8}"))
}

/// What a file with a byte that is not UTF-8 is told, after `path:line:col: `.
pub const NOT_UTF8: &str = "not UTF-8 text: the byte here is not valid UTF-8";

/// `bytes` as text, or the line and column of the first byte that is not UTF-8.
pub fn utf8_text(bytes: Vec<u8>) -> Result<String, (usize, usize)> {
    String::from_utf8(bytes).map_err(|e| position(e.as_bytes(), e.utf8_error().valid_up_to()))
}

/// The 1-based line and column of byte `at`, every byte before it being
/// valid UTF-8.
fn position(bytes: &[u8], at: usize) -> (usize, usize) {
    // Valid up to `at`, so this slice is text.
    let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// True if `path` names a trace (JSON lines): it ends in `.jsonl` or
/// `.json`, in any case. Anything else is read as a scenario file (TOML).
pub fn is_trace_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_byte_is_found_at_its_line_and_column() {
        let dir = std::env::temp_dir().join(format!("distsync-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: &[(&[u8], &str)] = &[
            (b"\xff", ":1:1:"),
            (b"name = \"t\"\nde\xc3\xa9x = \xfe\n", ":2:8:"),
            (b"a\nb\nc\xe2\x82", ":3:2:"),
        ];
        for (i, (bytes, at)) in cases.iter().enumerate() {
            let p = dir.join(format!("bad-{i}.toml"));
            std::fs::write(&p, bytes).unwrap();
            let e = read_text(&p).unwrap_err();
            assert!(
                e.starts_with(&format!("{}{at} not UTF-8", p.display())),
                "{e}"
            );
        }
        let p = dir.join("good.toml");
        std::fs::write(&p, "é\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "é\n");
    }

    #[test]
    fn traces_are_told_by_their_extension_in_any_case() {
        for name in ["t.jsonl", "T.JSONL", "t.JsonL", "t.json", "t.JSON"] {
            assert!(is_trace_file(Path::new(name)), "{name}");
        }
        for name in ["t.toml", "t.TOML", "jsonl", "t.jsonl.toml", "t"] {
            assert!(!is_trace_file(Path::new(name)), "{name}");
        }
    }
}
