//! Attendance a manager can use: per person and local day, the first check-in, the last
//! check-out, the hours between each check-in and the check-out that follows it, and
//! whether a check-out is missing; per person over a period, the days present, the hours
//! and the days left open. Punches are never edited: a correction is another punch.

use std::collections::BTreeMap;

use chrono::{DateTime, Local, NaiveDate, TimeZone};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::{AttendanceRecord, Store};
use crate::types::PunchKind;

/// One person's local day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaySummary {
    #[serde(serialize_with = "iso_date")]
    pub date: NaiveDate,
    pub external_id: String,
    pub name: String,
    /// Local `HH:MM` of the first check-in and the last check-out.
    pub first_in: Option<String>,
    pub last_out: Option<String>,
    /// Minutes between each check-in and the check-out that follows it.
    pub worked_minutes: i64,
    pub punches: usize,
    /// Of those, punches a supervisor added afterwards (the audit says who and why).
    pub corrected: usize,
    /// The day ended checked in.
    pub missing_check_out: bool,
}

/// `2026-12-01`: chrono's serde support is not compiled in for this one field.
fn iso_date<S: serde::Serializer>(
    date: &NaiveDate,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(date)
}

/// One person over the whole period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodSummary {
    pub external_id: String,
    pub name: String,
    pub days_present: usize,
    pub worked_minutes: i64,
    pub days_missing_check_out: usize,
}

/// A person's name and the day's punches (time, kind, a correction), as they are gathered.
type PersonDay<Z> = (String, Vec<(DateTime<Z>, PunchKind, bool)>);

/// Each person's days, in `zone`'s local dates, by date then id. Punches of people since
/// deleted are left out (they have no one to report on).
pub fn daily<Z: TimeZone>(records: &[AttendanceRecord], zone: &Z) -> Result<Vec<DaySummary>> {
    let mut days: BTreeMap<(NaiveDate, String), PersonDay<Z>> = BTreeMap::new();
    for record in records {
        let (Some(external_id), Some(name)) = (&record.external_id, &record.name) else {
            continue;
        };
        let at = DateTime::parse_from_rfc3339(&record.at)
            .map_err(|e| Error::Invalid(format!("punch time {:?}: {e}", record.at)))?
            .with_timezone(zone);
        days.entry((at.date_naive(), external_id.clone()))
            .or_insert_with(|| (name.clone(), Vec::new()))
            .1
            .push((at, record.kind, record.correction.is_some()));
    }
    Ok(days
        .into_iter()
        .map(|((date, external_id), (name, mut punches))| {
            punches.sort_by_key(|(at, _, _)| at.clone());
            let mut worked_minutes = 0;
            let mut open: Option<DateTime<Z>> = None;
            for (at, kind, _) in &punches {
                match kind {
                    PunchKind::In => open = Some(at.clone()),
                    PunchKind::Out => {
                        if let Some(since) = open.take() {
                            worked_minutes += (at.clone() - since).num_minutes();
                        }
                    }
                }
            }
            let clock = |at: &DateTime<Z>| at.naive_local().format("%H:%M").to_string();
            DaySummary {
                date,
                first_in: punches
                    .iter()
                    .find(|(_, k, _)| *k == PunchKind::In)
                    .map(|(at, _, _)| clock(at)),
                last_out: punches
                    .iter()
                    .rev()
                    .find(|(_, k, _)| *k == PunchKind::Out)
                    .map(|(at, _, _)| clock(at)),
                worked_minutes,
                punches: punches.len(),
                corrected: punches
                    .iter()
                    .filter(|(_, _, corrected)| *corrected)
                    .count(),
                missing_check_out: open.is_some(),
                external_id,
                name,
            }
        })
        .collect())
}

/// The days of each person added up, by id.
pub fn period(days: &[DaySummary]) -> Vec<PeriodSummary> {
    let mut people: BTreeMap<&str, PeriodSummary> = BTreeMap::new();
    for day in days {
        let person = people
            .entry(&day.external_id)
            .or_insert_with(|| PeriodSummary {
                external_id: day.external_id.clone(),
                name: day.name.clone(),
                days_present: 0,
                worked_minutes: 0,
                days_missing_check_out: 0,
            });
        person.days_present += 1;
        person.worked_minutes += day.worked_minutes;
        person.days_missing_check_out += usize::from(day.missing_check_out);
    }
    people.into_values().collect()
}

/// `daily` in the machine's local time.
pub fn daily_local(records: &[AttendanceRecord]) -> Result<Vec<DaySummary>> {
    daily(records, &Local)
}

/// The instant of a local date's midnight, RFC 3339 in UTC.
pub fn local_midnight(date: NaiveDate) -> Result<String> {
    let midnight = Local
        .from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .ok_or_else(|| Error::Invalid(format!("{date} has no local midnight")))?;
    Ok(midnight
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A local time as people write it (`2026-12-01 17:30`), as an instant.
pub fn parse_local_time(text: &str) -> Result<DateTime<chrono::Utc>> {
    let naive =
        chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M").map_err(|e| {
            Error::Invalid(format!(
                "{text:?} is not a local time like 2026-12-01 17:30 ({e})"
            ))
        })?;
    let local = Local
        .from_local_datetime(&naive)
        .earliest()
        .ok_or_else(|| Error::Invalid(format!("{text} does not exist in local time")))?;
    Ok(local.with_timezone(&chrono::Utc))
}

/// A period's attendance: each person's local days, and the punches supervisors added.
#[derive(Debug, Clone, Default)]
pub struct PeriodReport {
    pub days: Vec<DaySummary>,
    /// Oldest first, each with who added it and why.
    pub corrections: Vec<AttendanceRecord>,
}

/// The attendance of the local dates `from` to `to` (inclusive), read from the store.
pub fn days_between(store: &Store, from: NaiveDate, to: NaiveDate) -> Result<PeriodReport> {
    if from > to {
        return Err(Error::Invalid(format!(
            "the period starts ({from}) after it ends ({to})"
        )));
    }
    let next_day = to
        .succ_opt()
        .ok_or_else(|| Error::Invalid(format!("{to} is the last date there is")))?;
    // Up to the instant before the next local midnight.
    let end = DateTime::parse_from_rfc3339(&local_midnight(next_day)?)
        .map_err(|e| Error::Invalid(e.to_string()))?
        - chrono::Duration::milliseconds(1);
    let end = end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let records = store.attendance(Some(&local_midnight(from)?), Some(&end))?;
    Ok(PeriodReport {
        days: daily_local(&records)?,
        corrections: records
            .into_iter()
            .filter(|r| r.correction.is_some())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn punch(at: &str, kind: PunchKind, who: Option<&str>) -> AttendanceRecord {
        AttendanceRecord {
            at: at.into(),
            kind,
            score: 0.9,
            external_id: who.map(Into::into),
            name: who.map(|w| format!("Person {w}")),
            correction: None,
        }
    }

    #[test]
    fn days_add_up_in_local_time_and_a_missing_check_out_is_said() {
        let zone = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
        let records = [
            punch("2026-12-01T06:40:00Z", PunchKind::In, Some("E1")),
            punch("2026-12-01T10:00:00Z", PunchKind::Out, Some("E1")),
            punch("2026-12-01T11:00:00Z", PunchKind::In, Some("E1")),
            punch("2026-12-01T15:30:00Z", PunchKind::Out, Some("E1")),
            // 23:30 UTC is already the next day at UTC+2.
            punch("2026-12-01T23:30:00Z", PunchKind::In, Some("E1")),
            punch("2026-12-01T07:00:00Z", PunchKind::In, Some("E2")),
            punch("2026-12-01T08:00:00Z", PunchKind::In, None),
        ];
        let days = daily(&records, &zone).unwrap();
        assert_eq!(days.len(), 3);
        let first = &days[0];
        assert_eq!(
            (
                first.external_id.as_str(),
                first.first_in.as_deref(),
                first.last_out.as_deref()
            ),
            ("E1", Some("08:40"), Some("17:30"))
        );
        assert_eq!(first.worked_minutes, 200 + 270);
        assert!(!first.missing_check_out);
        assert!(days[1].missing_check_out, "E2 never checked out");
        assert_eq!(days[2].date, NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
        let people = period(&days);
        assert_eq!(people.len(), 2);
        assert_eq!(
            (
                people[0].days_present,
                people[0].worked_minutes,
                people[0].days_missing_check_out
            ),
            (2, 470, 1)
        );
        let bad = [punch("yesterday", PunchKind::In, Some("E1"))];
        assert!(daily(&bad, &zone).is_err());
    }
}
