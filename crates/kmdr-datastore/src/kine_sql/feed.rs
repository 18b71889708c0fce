//! The kine-on-SQL source of the capture core (PostgreSQL and MySQL/MariaDB):
//! kine's table is its own log (`id` is the revision, every row an event), so
//! the capture reads the rows with `id` above the last one it has, every
//! `poll_every` (200 ms), each read one consistent snapshot together with
//! kine's compact revision.
//!
//! Rows become events exactly as the export reads them (`tenant::kine_sql`):
//! keys relative to `/registry`, a `deleted` row a delete, a create row's
//! create revision its own id; kine's `compact_rev_key` row, its `gap-<id>`
//! fill rows and keys outside `/registry` are not tenant data and only move
//! the coverage.
//!
//! **Ids that are not visible yet.** SERIAL / AUTO_INCREMENT hand out ids
//! when a row is inserted, not when its transaction commits: row 11 can be
//! visible while row 10's transaction is still open, and an id can belong to
//! a transaction that rolls back (kine's own inserts fail on its unique
//! `(name, prev_revision)` index when two writers race). The coverage never
//! passes an id that is not visible: the rows after it wait. A missing id
//! that stays missing for `gap_wait` (2 s) counts as never used. kine itself
//! waits about 1 s and then writes a `gap-<id>` row for it (deleted, empty),
//! which settles the question earlier: if the id's transaction is still
//! open, kine's insert waits for it and fails when it commits.
//!
//! **Compaction.** kine deletes superseded and deleted rows at or below its
//! compact revision. When the compact revision reaches the first id the
//! capture still needs, rows it needs may be gone: [`Stopped::Compacted`].

use crate::feed::{ChangeFeed, Changes, DeltaTarget, FeedError, Stopped};
use crate::kine_sql::{KineLog, LOG_PAGE, LogRow};
use kmdr_repo::deltas::{DeltaEvent, Op};
use std::time::{Duration, Instant};

/// Reads one tenant's kine table after the last id captured.
pub struct KineSqlFeed<L: KineLog> {
    log: L,
    target: DeltaTarget,
    poll_every: Duration,
    gap_wait: Duration,
    /// Every id up to this one was handed over, or skipped as never used.
    covered: i64,
    /// The ids after `covered` up to `.0` are not visible; first seen missing at `.1`.
    hole: Option<(i64, Instant)>,
    /// When the table was last read.
    last_poll: Option<Instant>,
    /// The last read filled a whole page: read again at once.
    more: bool,
}

impl<L: KineLog> KineSqlFeed<L> {
    /// Read `log` from id `from` on.
    pub fn new(log: L, target: &DeltaTarget, options: crate::feed::CaptureOptions, from: i64) -> Self {
        KineSqlFeed {
            log,
            target: target.clone(),
            poll_every: options.poll_every,
            gap_wait: options.gap_wait,
            covered: from - 1,
            hole: None,
            last_poll: None,
            more: false,
        }
    }

    /// A row as a change of the tenant; `None` for rows that are not tenant data.
    fn event(&self, row: LogRow) -> Option<DeltaEvent> {
        let key = self.target.relative(&row.name)?.to_vec();
        Some(if row.deleted != 0 {
            DeltaEvent { op: Op::Delete, key, value: Vec::new(), revision: row.id, create_revision: 0 }
        } else {
            // kine stores create_revision 0 on create rows: the row's own id is it.
            let create_revision = if row.created != 0 { row.id } else { row.create_revision };
            DeltaEvent { op: Op::Put, key, value: row.value, revision: row.id, create_revision }
        })
    }

    /// Take the rows of one read (in id order, all after `covered`): hand
    /// over the contiguous ones, stop at an id not visible yet, and skip
    /// such ids once they have been missing for `gap_wait`.
    fn take(&mut self, rows: Vec<LogRow>, now: Instant) -> Changes {
        let mut out = Changes::default();
        let full = rows.len() >= LOG_PAGE;
        let mut blocked = false;
        for row in rows {
            if row.id <= self.covered {
                continue;
            }
            if row.id > self.covered + 1 {
                let missing_to = row.id - 1;
                match self.hole {
                    Some((upto, since)) if now.duration_since(since) >= self.gap_wait => {
                        let skip_to = upto.min(missing_to);
                        tracing::info!(
                            "{}: kine ids {}..={skip_to} stayed invisible for {:?}: counted as never used (rolled back)",
                            self.target.series,
                            self.covered + 1,
                            self.gap_wait
                        );
                        self.covered = skip_to;
                        self.hole = None;
                        if skip_to < missing_to {
                            self.hole = Some((missing_to, now));
                            blocked = true;
                            break;
                        }
                    }
                    Some(_) => {
                        blocked = true;
                        break;
                    }
                    None => {
                        self.hole = Some((missing_to, now));
                        blocked = true;
                        break;
                    }
                }
            }
            self.covered = row.id;
            if self.hole.is_some_and(|(upto, _)| upto <= self.covered) {
                self.hole = None;
            }
            if let Some(e) = self.event(row) {
                out.events.push(e);
            }
        }
        self.more = full && !blocked;
        out.covered = Some(self.covered);
        out.idle = !self.more && self.hole.is_none();
        out
    }
}

impl<L: KineLog> ChangeFeed for KineSqlFeed<L> {
    async fn next(&mut self, until: Instant) -> Result<Result<Changes, Stopped>, FeedError> {
        if !self.more
            && let Some(last) = self.last_poll
        {
            let wake = (last + self.poll_every).min(until);
            tokio::time::sleep_until(wake.into()).await;
            if Instant::now() < last + self.poll_every {
                return Ok(Ok(Changes::default()));
            }
        }
        self.last_poll = Some(Instant::now());
        let page = self.log.after(self.covered).await?;
        if page.compact_revision > self.covered {
            return Ok(Err(Stopped::Compacted { wanted: self.covered + 1, compact_revision: page.compact_revision }));
        }
        Ok(Ok(self.take(page.rows, Instant::now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kine_sql::LogPage;
    use crate::store::TenantError;

    struct NoLog;
    impl KineLog for NoLog {
        async fn after(&mut self, _after: i64) -> Result<LogPage, TenantError> {
            Ok(LogPage::default())
        }
    }

    fn row(id: i64, name: &str, created: i64, deleted: i64, create_revision: i64) -> LogRow {
        LogRow {
            id,
            name: name.as_bytes().to_vec(),
            created,
            deleted,
            create_revision,
            value: format!("v{id}").into_bytes(),
        }
    }

    fn feed(from: i64) -> KineSqlFeed<NoLog> {
        KineSqlFeed::new(NoLog, &DeltaTarget::kine("t1"), Default::default(), from)
    }

    #[test]
    fn rows_become_the_exports_events() {
        let mut f = feed(1);
        let c = f.take(
            vec![
                row(1, "compact_rev_key", 1, 0, 0),
                row(2, "/registry/a", 1, 0, 0),
                row(3, "/registry/a", 0, 0, 2),
                row(4, "gap-4", 0, 1, 0),
                row(5, "/registry/a", 0, 1, 2),
                row(6, "/other", 1, 0, 0),
            ],
            Instant::now(),
        );
        let ev = |op, value: &str, revision, create_revision| DeltaEvent {
            op,
            key: b"/a".to_vec(),
            value: value.into(),
            revision,
            create_revision,
        };
        assert_eq!(c.events, vec![ev(Op::Put, "v2", 2, 2), ev(Op::Put, "v3", 3, 2), ev(Op::Delete, "", 5, 0)]);
        assert_eq!((c.covered, c.idle), (Some(6), true));
    }

    #[test]
    fn an_invisible_id_holds_the_coverage_until_it_shows_or_times_out() {
        let t0 = Instant::now();
        let mut f = feed(10);
        // 10 is not visible, 11 is: nothing passes 9.
        let c = f.take(vec![row(11, "/registry/b", 1, 0, 0)], t0);
        assert_eq!((c.events.len(), c.covered, c.idle), (0, Some(9), false));
        // 10 commits later: both, in order.
        let c = f.take(
            vec![row(10, "/registry/a", 1, 0, 0), row(11, "/registry/b", 1, 0, 0)],
            t0 + Duration::from_millis(500),
        );
        assert_eq!(c.events.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![10, 11]);
        assert_eq!((c.covered, c.idle), (Some(11), true));
        // 12 and 13 never show: held for gap_wait, then skipped.
        let c = f.take(vec![row(14, "/registry/c", 1, 0, 0)], t0 + Duration::from_secs(1));
        assert_eq!((c.events.len(), c.covered), (0, Some(11)));
        let c = f.take(vec![row(14, "/registry/c", 1, 0, 0)], t0 + Duration::from_millis(2900));
        assert_eq!((c.events.len(), c.covered), (0, Some(11)));
        let c =
            f.take(vec![row(14, "/registry/c", 1, 0, 0), row(16, "/registry/d", 1, 0, 0)], t0 + Duration::from_secs(3));
        assert_eq!(c.events.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![14]);
        // 15 was first seen missing only now: it waits its own gap_wait.
        assert_eq!((c.covered, c.idle), (Some(14), false));
        let c = f.take(vec![row(16, "/registry/d", 1, 0, 0)], t0 + Duration::from_secs(5));
        assert_eq!((c.covered, c.events.len()), (Some(16), 1));
    }
}
