//! Run ids: one path component of a safe alphabet, wherever a run id is read from a
//! flag or a meta.json and joined to a directory (`OUT/<run_id>`). Without this, an id
//! such as `../x`, `/abs` or `a/b` would write outside the directory it is joined to.

use thiserror::Error;

/// The longest run id accepted, in bytes (one path component stays well under NAME_MAX).
pub const MAX_RUN_ID_LEN: usize = 128;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error(
    "invalid run id '{shown}': {why}; a run id is one path component of 1 to {MAX_RUN_ID_LEN} \
     characters from A-Z a-z 0-9 . _ - that does not start with '.'"
)]
pub struct RunIdError {
    /// The id as given, with control characters escaped so that the message is safe to print.
    pub shown: String,
    pub why: &'static str,
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks that `id` is a safe run id and hands it back.
pub fn validate_run_id(id: &str) -> Result<&str, RunIdError> {
    let why = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_RUN_ID_LEN {
        Some("it is too long")
    } else if id.contains('/') || id.contains('\\') {
        Some("it contains a path separator")
    } else if id.starts_with('.') {
        Some("it starts with '.'")
    } else if !id.chars().all(allowed) {
        Some("it contains a character outside the safe alphabet")
    } else {
        None
    };
    match why {
        None => Ok(id),
        Some(why) => Err(RunIdError {
            shown: id.chars().take(200).flat_map(char::escape_debug).collect(),
            why,
        }),
    }
}

/// A safe run-id part made from free text (a project name): characters outside the
/// alphabet become `_`, leading dots are dropped, and the result is cut to `max_len`
/// bytes; `fallback` when nothing is left.
pub fn sanitize_run_id_part(text: &str, max_len: usize, fallback: &str) -> String {
    let cleaned: String = text
        .trim_start_matches('.')
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(max_len)
        .collect();
    if cleaned.is_empty() {
        fallback.to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_safe_component_only() {
        for ok in ["run-1", "hf-training-20261203-130102-42", "a.b_c", "X", "9"] {
            assert_eq!(validate_run_id(ok), Ok(ok));
        }
        let long = "a".repeat(MAX_RUN_ID_LEN + 1);
        for bad in [
            "", "..", ".", "../x", "/abs", "a/b", "a\\b", ".hidden", "sp ace", "tab\t", "nul\0",
            "é", &long,
        ] {
            let e = validate_run_id(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid run id"), "{e}");
        }
        assert!(validate_run_id(&"a".repeat(MAX_RUN_ID_LEN)).is_ok());
    }

    #[test]
    fn sanitized_parts_validate() {
        for text in ["my project", "../../etc", "..", "/", "résumé", "ok-1"] {
            let part = sanitize_run_id_part(text, 64, "run");
            assert!(validate_run_id(&part).is_ok(), "{text} -> {part}");
        }
        assert_eq!(sanitize_run_id_part("a/b c", 64, "run"), "a_b_c");
        assert_eq!(sanitize_run_id_part("...", 64, "run"), "run");
        assert_eq!(sanitize_run_id_part("abcdef", 3, "run"), "abc");
    }
}
