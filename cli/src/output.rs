//! Output: stable JSON (`--json`: snake_case keys, ids as strings, days as YYYY-MM-DD) or
//! readable tables.

use anyhow::Result;
use serde::Serialize;

/// Prints `value` as JSON, or runs `table` to print it for people.
pub fn show<T: Serialize>(json: bool, value: &T, table: impl FnOnce(&T)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        table(value);
    }
    Ok(())
}

/// Shortens text to `width` characters for a table cell.
pub fn cell(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
