//! Attendance as files: CSV and JSON, written so that every export imports again. A CSV
//! cell a spreadsheet would run as a formula (one starting with `=`, `+`, `-`, `@`, a tab
//! or a carriage return) is written with a leading `'`, as spreadsheets expect, and that
//! quote is taken off again on import.

use std::path::Path;

use super::AttendanceRecord;
use crate::error::{StoreError, StoreResult};

const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

fn neutralise(cell: &str) -> String {
    if cell.starts_with(FORMULA_STARTS) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

fn restore(cell: String) -> String {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest.to_string(),
        _ => cell,
    }
}

fn on_text(record: &AttendanceRecord, change: impl Fn(String) -> String) -> AttendanceRecord {
    AttendanceRecord {
        external_id: record.external_id.clone().map(&change),
        name: record.name.clone().map(&change),
        ..record.clone()
    }
}

/// The records as a file's bytes.
pub fn write(records: &[AttendanceRecord], format: Format) -> StoreResult<Vec<u8>> {
    let mut bytes = Vec::new();
    let failed = |e: String| StoreError::InvalidSetting(format!("cannot write the export: {e}"));
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut bytes, records).map_err(|e| failed(e.to_string()))?
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(&mut bytes);
            for record in records {
                writer
                    .serialize(on_text(record, |cell| neutralise(&cell)))
                    .map_err(|e| failed(e.to_string()))?;
            }
            writer.flush().map_err(|e| failed(e.to_string()))?;
        }
    }
    Ok(bytes)
}

/// Records from an export (JSON when the text starts with `[`, CSV otherwise).
pub fn read(text: &str, source: &Path) -> StoreResult<Vec<AttendanceRecord>> {
    let refused =
        |what: String| StoreError::InvalidSetting(format!("{}: {what}", source.display()));
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text)
            .map_err(|e| refused(format!("not an attendance JSON export ({e})")));
    }
    csv::Reader::from_reader(text.as_bytes())
        .deserialize::<AttendanceRecord>()
        .enumerate()
        .map(|(index, record)| {
            record
                .map(|record| on_text(&record, restore))
                .map_err(|e| {
                    refused(format!(
                        "line {}: not an attendance event, columns at,kind,score,external_id,name ({e})",
                        index + 2
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PunchKind;

    #[test]
    fn formulas_are_neutralised_and_come_back() {
        let record = AttendanceRecord {
            at: "2026-11-30T08:00:00.000Z".into(),
            kind: PunchKind::In,
            score: 0.9,
            external_id: Some("=cmd|' /C calc'!A0".into()),
            name: Some("+1+2".into()),
            correction: None,
        };
        let plain = AttendanceRecord {
            external_id: Some("'quoted".into()),
            name: None,
            ..record.clone()
        };
        let bytes = write(&[record.clone(), plain.clone()], Format::Csv).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("'=cmd") && text.contains("'+1+2"), "{text}");
        assert!(
            !text
                .lines()
                .any(|l| l.split(',').any(|c| c.starts_with('=')))
        );
        let back = read(&text, Path::new("x.csv")).unwrap();
        assert_eq!(back, vec![record, plain]);
    }
}
