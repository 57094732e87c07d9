//! Names and ids are the operator's text, shown on screens, printed in terminals and
//! exported to spreadsheets: they may not carry control characters (newlines, ANSI
//! escapes), invisible direction overrides, or surrounding blanks.

use crate::error::{StoreError, StoreResult};

/// Long enough for any real name or account number.
const MOST_CHARS: usize = 200;

/// Whether `value` may stand as the `field` of a person.
pub fn check_text(field: &'static str, value: &str) -> StoreResult<()> {
    let refuse = |reason: &str| {
        Err(StoreError::BadText {
            field,
            value: value.chars().take(MOST_CHARS).collect(),
            reason: reason.to_string(),
        })
    };
    if value.trim().is_empty() {
        return refuse("it is empty");
    }
    if value.trim() != value {
        return refuse("it starts or ends with blanks");
    }
    if value.chars().count() > MOST_CHARS {
        return refuse("it is longer than 200 characters");
    }
    if value.chars().any(char::is_control) {
        return refuse("it holds a control character (a newline, a tab, an escape)");
    }
    // Bidirectional overrides and isolates make text display other than it reads.
    if value
        .chars()
        .any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    {
        return refuse("it holds an invisible text-direction override");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_controls_or_overrides_are_refused() {
        for good in [
            "Ada Lovelace",
            "王涛",
            "=cmd|' /C calc'!A0",
            "+1+2",
            "O'Brien",
        ] {
            assert!(check_text("name", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            " Ada",
            "Ada\nLovelace",
            "\u{1b}[31mAda",
            "Ada\u{202E}ecalevol",
            &"x".repeat(201),
        ] {
            assert!(check_text("name", bad).is_err(), "{bad:?}");
        }
    }
}
