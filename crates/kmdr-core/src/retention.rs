//! Retention: which backups `kmdr forget` keeps. The rules are restic's: walk
//! the backups of one series from newest to oldest; `last N` keeps the N
//! newest; `hourly N` keeps the newest backup of each of the N most recent
//! hours that have one, and so on for days, ISO weeks and months. A backup is
//! kept when any rule keeps it, and the reasons are reported.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

/// How many backups to keep per rule. All zero keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KeepPolicy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// The verdict for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionDecision<T> {
    pub item: T,
    pub keep: bool,
    /// The rules that keep it (`last`, `hourly`, ...); empty when removed.
    pub reasons: Vec<&'static str>,
}

impl KeepPolicy {
    /// True when no rule is set; `forget` refuses such a policy rather than removing everything.
    pub fn is_empty(&self) -> bool {
        self.last == 0 && self.hourly == 0 && self.daily == 0 && self.weekly == 0 && self.monthly == 0
    }

    /// Decide for each backup of one series. `items` may come in any order; the
    /// decisions come back newest first.
    pub fn apply<T: Clone>(&self, items: &[(T, DateTime<Utc>)]) -> Vec<RetentionDecision<T>> {
        let mut sorted: Vec<&(T, DateTime<Utc>)> = items.iter().collect();
        sorted.sort_by_key(|b| std::cmp::Reverse(b.1));
        type Bucket = fn(&DateTime<Utc>) -> i64;
        let rules: [(&'static str, u32, Bucket); 5] = [
            ("last", self.last, |_| -1),
            ("hourly", self.hourly, |t| (t.year() as i64 * 10_000 + t.ordinal() as i64) * 100 + t.hour() as i64),
            ("daily", self.daily, |t| t.year() as i64 * 1000 + t.ordinal() as i64),
            ("weekly", self.weekly, |t| {
                let w = t.iso_week();
                w.year() as i64 * 100 + w.week() as i64
            }),
            ("monthly", self.monthly, |t| t.year() as i64 * 100 + t.month() as i64),
        ];
        let mut remaining: Vec<u32> = rules.iter().map(|r| r.1).collect();
        let mut last_bucket: Vec<Option<i64>> = vec![None; rules.len()];
        let mut out = Vec::with_capacity(sorted.len());
        for (item, time) in sorted {
            let mut reasons = Vec::new();
            for (i, (name, _, bucket)) in rules.iter().enumerate() {
                if remaining[i] == 0 {
                    continue;
                }
                let b = bucket(time);
                // `last` keeps every item; the others keep the newest per bucket.
                let new_bucket = *name == "last" || last_bucket[i] != Some(b);
                if new_bucket {
                    last_bucket[i] = Some(b);
                    remaining[i] -= 1;
                    reasons.push(*name);
                }
            }
            out.push(RetentionDecision { item: item.clone(), keep: !reasons.is_empty(), reasons });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn history() -> Vec<(u32, DateTime<Utc>)> {
        // One backup every 30 minutes for 40 days, newest first numbering.
        let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
        (0..40 * 48).map(|i| (i, start + Duration::minutes(30 * i as i64))).collect()
    }

    fn kept(p: KeepPolicy) -> Vec<u32> {
        p.apply(&history()).into_iter().filter(|d| d.keep).map(|d| d.item).collect()
    }

    #[test]
    fn keep_last() {
        let k = kept(KeepPolicy { last: 3, ..Default::default() });
        assert_eq!(k, vec![1919, 1918, 1917]);
    }

    #[test]
    fn keep_hourly_takes_newest_of_each_hour() {
        let k = kept(KeepPolicy { hourly: 3, ..Default::default() });
        // 1919 = 23:30 of the last day, 1917 = 22:30, 1915 = 21:30.
        assert_eq!(k, vec![1919, 1917, 1915]);
    }

    #[test]
    fn keep_daily_weekly_monthly() {
        let d = kept(KeepPolicy { daily: 2, ..Default::default() });
        assert_eq!(d, vec![1919, 1871]);
        let m = kept(KeepPolicy { monthly: 5, ..Default::default() });
        // October and November 2026 only: two months exist.
        assert_eq!(m.len(), 2);
        assert_eq!(m[1], 1487, "newest backup of October is Oct 31 23:30");
        let w = kept(KeepPolicy { weekly: 1, ..Default::default() });
        assert_eq!(w, vec![1919]);
    }

    #[test]
    fn union_of_rules_with_reasons() {
        let p = KeepPolicy { last: 1, daily: 2, ..Default::default() };
        let ds = p.apply(&history());
        assert_eq!(ds[0].reasons, vec!["last", "daily"]);
        assert!(ds.iter().filter(|d| d.keep).count() == 2);
        assert!(KeepPolicy::default().is_empty());
    }
}
