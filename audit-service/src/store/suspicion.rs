//! The suspicious-activity rule and the queries that apply it to a batch.
//! An attempt whose producer set its own flag (`producer_suspicious`, an
//! imported row's) keeps that flag; the rule judges the others.
//!
//! [`Judge`] decides in memory from grouped counts of stored failures, and
//! [`Judge::flags`] runs the exact checks those counts leave open, on any
//! backend's connection. [`judge_batch`] is the whole rule for SQLite and
//! MySQL/MariaDB; PostgreSQL looks up and counts its own way (arrays, two
//! connections at once, measured faster) and then calls [`Judge::flags`].

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::insert::{IN_CHUNK, stored_event_ids};
use crate::attempt::{Micros, NewAttempt};

/// The suspicious-activity rule: a failed attempt is flagged when, counting
/// itself, `threshold` failures from the same IP or the same email fall in
/// the `window` ending at its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspicionRule {
    /// Failures (including the one being judged) that trigger the flag.
    pub threshold: u32,
    /// How far back failures count.
    pub window: Duration,
}

impl SuspicionRule {
    /// The rule with the standard one-hour window.
    pub fn per_hour(threshold: u32) -> Self {
        Self {
            threshold,
            window: Duration::from_secs(3600),
        }
    }

    /// How many *earlier* failures flag an attempt (the attempt itself is
    /// the last of `threshold`).
    pub(super) fn others_needed(&self) -> i64 {
        i64::from(self.threshold.saturating_sub(1))
    }

    /// Start of the window for an attempt at `at`.
    pub(super) fn window_start(&self, at: Micros) -> Micros {
        let window = i64::try_from(self.window.as_micros()).unwrap_or(i64::MAX);
        at.saturating_sub(window)
    }
}

/// What the suspicious-activity rule groups failures by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum KeyKind {
    /// The client's address, as `ip_key`.
    Ip,
    /// The submitted email, lower-cased.
    Email,
}

impl KeyKind {
    /// Every kind, in the order the rule counts them.
    pub(super) const ALL: [Self; 2] = [Self::Ip, Self::Email];

    /// The column holding this kind's key.
    fn column(self) -> &'static str {
        match self {
            Self::Ip => "ip_key",
            Self::Email => "email_lower",
        }
    }

    /// The attempt's key; empty means unknown, and unknowns are not one
    /// client.
    fn of(self, a: &NewAttempt) -> &str {
        match self {
            Self::Ip => &a.ip_key,
            Self::Email => &a.email_lower,
        }
    }
}

/// A stored-failure count the batch-wide counts could not settle: the
/// attempt is flagged when at least `needed` stored failures of `key` fall
/// in `(from, at]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    kind: KeyKind,
    key: String,
    from: Micros,
    at: Micros,
    needed: i64,
}

/// The flag of one new attempt: settled, or settled by the first of its
/// checks that holds (flagged when any does).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Flag(bool),
    Check(Vec<Check>),
}

/// A grouped count of stored failures: for each of `keys`, those in the
/// `common` window (`surely`) and in the `union` window (`maybe`), each
/// `(after, up_to]` in microseconds.
pub(super) struct CountPlan<'a> {
    /// The keys of the batch's new failures, sorted, each once.
    pub(super) keys: Vec<&'a str>,
    /// The window every attempt of the batch shares.
    pub(super) common: (Micros, Micros),
    /// The union of the attempts' windows.
    pub(super) union: (Micros, Micros),
}

/// Applies the suspicious-activity rule to a whole batch at once.
///
/// Stored failures are counted with one grouped query per key kind over
/// the batch's time span: for each key, the failures in the window common
/// to every attempt of the batch (`surely`, a lower bound of any attempt's
/// count) and in the union of their windows (`maybe`, an upper bound). The
/// batch's own new failures are then added in memory, in `occurred_at`
/// order (ties in batch order), exactly as if each row had been inserted
/// and counted in turn. Only when the bounds disagree about an attempt does
/// it need an exact per-attempt count (a [`Check`]).
pub(super) struct Judge<'a> {
    rule: SuspicionRule,
    attempts: &'a [NewAttempt],
    /// Indexes of the rows to insert, in batch order: the first of each
    /// event id, when not stored already.
    fresh: Vec<usize>,
    /// Earliest and latest time of the fresh failures with some key.
    span: Option<(Micros, Micros)>,
    /// Per kind and key, `(surely, maybe)` stored failures.
    counts: HashMap<(KeyKind, String), (i64, i64)>,
}

impl<'a> Judge<'a> {
    /// `stored` holds the batch's event ids already in the database.
    pub(super) fn new(
        rule: SuspicionRule,
        attempts: &'a [NewAttempt],
        stored: &HashSet<String>,
    ) -> Self {
        let mut seen = HashSet::new();
        let fresh: Vec<usize> = attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| !stored.contains(&a.event_id) && seen.insert(a.event_id.as_str()))
            .map(|(i, _)| i)
            .collect();
        let span = fresh
            .iter()
            .map(|&i| &attempts[i])
            .filter(|a| !a.successful && KeyKind::ALL.iter().any(|k| !k.of(a).is_empty()))
            .fold(None, |span, a| match span {
                None => Some((a.occurred_at, a.occurred_at)),
                Some((lo, hi)) => Some((a.occurred_at.min(lo), a.occurred_at.max(hi))),
            });
        Self {
            rule,
            attempts,
            fresh,
            span,
            counts: HashMap::new(),
        }
    }

    /// Whether any row is to be inserted.
    pub(super) fn is_empty(&self) -> bool {
        self.fresh.is_empty()
    }

    /// What a grouped count for `kind` needs (`None` when no stored
    /// failure can matter).
    pub(super) fn count_plan(&self, kind: KeyKind) -> Option<CountPlan<'a>> {
        let (lo, hi) = self.span?;
        if self.rule.others_needed() == 0 {
            return None;
        }
        let mut keys: Vec<&'a str> = self
            .fresh
            .iter()
            .map(|&i| &self.attempts[i])
            .filter(|a| !a.successful)
            .map(|a| kind.of(a))
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // Common window: (hi - window, lo]; empty when the batch spans more
        // than the window. Union: (lo - window, hi].
        Some(CountPlan {
            keys,
            common: (self.rule.window_start(hi), lo),
            union: (self.rule.window_start(lo), hi),
        })
    }

    /// The grouped count queries for `kind`, each returning `(key, surely,
    /// maybe)` rows; keys go in `IN` lists, which every engine takes.
    fn count_queries<DB>(&self, kind: KeyKind) -> Vec<QueryBuilder<DB>>
    where
        DB: Database,
        for<'t> i64: Encode<'t, DB> + Type<DB>,
        for<'t> String: Encode<'t, DB> + Type<DB>,
    {
        let Some(plan) = self.count_plan(kind) else {
            return Vec::new();
        };
        let column = kind.column();
        plan.keys
            .chunks(IN_CHUNK)
            .map(|chunk| {
                let mut qb = QueryBuilder::<DB>::new(format!("SELECT {column}, COUNT(CASE WHEN "));
                qb.push("occurred_at > ")
                    .push_bind(plan.common.0)
                    .push(" AND occurred_at <= ")
                    .push_bind(plan.common.1)
                    .push(" THEN 1 END), COUNT(*) FROM login_attempts WHERE NOT successful")
                    .push(" AND occurred_at > ")
                    .push_bind(plan.union.0)
                    .push(" AND occurred_at <= ")
                    .push_bind(plan.union.1)
                    .push(format!(" AND {column} IN ("));
                let mut list = qb.separated(", ");
                for key in chunk {
                    list.push_bind((*key).to_owned());
                }
                qb.push(format!(") GROUP BY {column}"));
                qb
            })
            .collect()
    }

    /// The exact count for `check`, stopping at what it needs (one row,
    /// one `COUNT(*)`).
    fn check_query<DB>(check: &Check) -> QueryBuilder<DB>
    where
        DB: Database,
        for<'t> i64: Encode<'t, DB> + Type<DB>,
        for<'t> String: Encode<'t, DB> + Type<DB>,
    {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM login_attempts WHERE {} = ",
            check.kind.column()
        ));
        qb.push_bind(check.key.clone())
            .push(" AND occurred_at > ")
            .push_bind(check.from)
            .push(" AND occurred_at <= ")
            .push_bind(check.at)
            .push(" AND NOT successful LIMIT ")
            .push_bind(check.needed)
            .push(") AS recent");
        qb
    }

    /// Records rows of a count query for `kind`.
    pub(super) fn add_counts(&mut self, kind: KeyKind, rows: Vec<(String, i64, i64)>) {
        for (key, surely, maybe) in rows {
            self.counts.insert((kind, key), (surely, maybe));
        }
    }

    /// The verdict for each row to insert, in batch order.
    fn verdicts(&self) -> Vec<(usize, Verdict)> {
        let needed = self.rule.others_needed();
        let mut order = self.fresh.clone();
        order.sort_by_key(|&i| (self.attempts[i].occurred_at, i));
        // Times of the batch's failures judged so far, per kind and key
        // (ascending, as judged in time order).
        let mut earlier: HashMap<(KeyKind, &str), Vec<Micros>> = HashMap::new();
        let mut verdicts: HashMap<usize, Verdict> = HashMap::with_capacity(order.len());
        for i in order {
            let a = &self.attempts[i];
            if a.successful {
                verdicts.insert(i, Verdict::Flag(a.producer_suspicious.unwrap_or(false)));
                continue;
            }
            let from = self.rule.window_start(a.occurred_at);
            let mut flagged = needed == 0;
            let mut checks = Vec::new();
            for kind in KeyKind::ALL {
                let key = kind.of(a);
                if key.is_empty() {
                    continue;
                }
                let times = earlier.entry((kind, key)).or_default();
                let in_batch = i64::try_from(times.len() - times.partition_point(|&t| t <= from))
                    .unwrap_or(i64::MAX);
                times.push(a.occurred_at);
                if flagged {
                    continue;
                }
                let (surely, maybe) = self
                    .counts
                    .get(&(kind, key.to_owned()))
                    .copied()
                    .unwrap_or((0, 0));
                if surely.saturating_add(in_batch) >= needed {
                    flagged = true;
                } else if maybe.saturating_add(in_batch) >= needed {
                    checks.push(Check {
                        kind,
                        key: key.to_owned(),
                        from,
                        at: a.occurred_at,
                        needed: needed - in_batch,
                    });
                }
            }
            // A producer's own flag (an imported row's) stands; the
            // attempt still counted above, as a failure, for later ones.
            let verdict = match a.producer_suspicious {
                Some(flag) => Verdict::Flag(flag),
                None if flagged || checks.is_empty() => Verdict::Flag(flagged),
                None => Verdict::Check(checks),
            };
            verdicts.insert(i, verdict);
        }
        self.fresh
            .iter()
            .filter_map(|&i| verdicts.remove(&i).map(|v| (i, v)))
            .collect()
    }

    /// The flag of each row to insert, by index in batch order, once the
    /// stored failures are counted ([`Self::add_counts`]); a verdict the
    /// counts left open is settled with exact counts on `conn`.
    pub(super) async fn flags<DB>(
        &self,
        conn: &mut DB::Connection,
    ) -> Result<Vec<(usize, bool)>, sqlx::Error>
    where
        DB: Database,
        DB::Arguments: IntoArguments<DB>,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'t> i64: Encode<'t, DB> + Decode<'t, DB> + Type<DB>,
        for<'t> String: Encode<'t, DB> + Type<DB>,
        usize: ColumnIndex<DB::Row>,
    {
        let mut rows = Vec::new();
        for (i, verdict) in self.verdicts() {
            let flagged = match verdict {
                Verdict::Flag(flag) => flag,
                // Flagged when the first check that holds is found.
                Verdict::Check(checks) => {
                    let mut holds = false;
                    for check in &checks {
                        let mut qb = Self::check_query::<DB>(check);
                        let failures: i64 = qb.build_query_scalar().fetch_one(&mut *conn).await?;
                        if failures >= check.needed {
                            holds = true;
                            break;
                        }
                    }
                    holds
                }
            };
            rows.push((i, flagged));
        }
        Ok(rows)
    }
}

/// Applies the rule to a batch on `conn`, for the backends that look up
/// and count with `IN` lists (SQLite, MySQL/MariaDB): the rows to insert
/// (the first of each event id not stored yet), in batch order, each with
/// its flag.
pub(super) async fn judge_batch<'a, DB>(
    conn: &mut DB::Connection,
    rule: SuspicionRule,
    attempts: &'a [NewAttempt],
) -> Result<Vec<(&'a NewAttempt, bool)>, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> i64: Encode<'t, DB> + Decode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Decode<'t, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let stored = stored_event_ids::<DB>(&mut *conn, attempts).await?;
    let mut judge = Judge::new(rule, attempts, &stored);
    if judge.is_empty() {
        return Ok(Vec::new());
    }
    for kind in KeyKind::ALL {
        for mut qb in judge.count_queries::<DB>(kind) {
            let counts = qb.build_query_as().fetch_all(&mut *conn).await?;
            judge.add_counts(kind, counts);
        }
    }
    let flags = judge.flags::<DB>(conn).await?;
    Ok(flags.into_iter().map(|(i, s)| (&attempts[i], s)).collect())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::attempt::ip_key;

    const SECOND: Micros = 1_000_000;

    /// A failed attempt with no email; the backends' own tests use it too.
    pub(in crate::store) fn failure(event_id: &str, ip: &str, at_secs: i64) -> NewAttempt {
        NewAttempt {
            event_id: event_id.to_owned(),
            occurred_at: at_secs * SECOND,
            identifier: String::new(),
            user_id: None,
            username: None,
            email: String::new(),
            email_lower: String::new(),
            successful: false,
            reject_reason: "bad_password".to_owned(),
            kind: "login".to_owned(),
            ip: ip.to_owned(),
            ip_key: ip_key(ip),
            user_agent: None,
            request_id: String::new(),
            count: 1,
            last_occurred_at: None,
            original_reject_reason: None,
            producer_suspicious: None,
        }
    }

    #[test]
    fn a_producers_own_flag_stands_and_its_failure_still_counts() {
        let mut asserted_clean = failure("b", "10.0.0.1", 1);
        asserted_clean.producer_suspicious = Some(false);
        let mut asserted_flag = failure("d", "10.0.0.9", 3);
        asserted_flag.producer_suspicious = Some(true);
        let mut success = failure("e", "10.0.0.9", 4);
        success.successful = true;
        success.producer_suspicious = Some(true);
        let batch = [
            failure("a", "10.0.0.1", 0),
            asserted_clean,
            failure("c", "10.0.0.1", 2),
            asserted_flag,
            success,
        ];
        let judge = Judge::new(SuspicionRule::per_hour(2), &batch, &HashSet::new());
        assert_eq!(
            judge.verdicts(),
            vec![
                (0, Verdict::Flag(false)),
                // The rule would flag it (its second failure in the hour).
                (1, Verdict::Flag(false)),
                // Flagged by the rule: b counted as an earlier failure.
                (2, Verdict::Flag(true)),
                // The rule would not flag it (its address's first failure).
                (3, Verdict::Flag(true)),
                (4, Verdict::Flag(true)),
            ]
        );
    }

    #[test]
    fn a_batch_is_judged_in_time_order_and_once_per_event() {
        let batch = [
            failure("c", "10.0.0.1", 20),
            failure("a", "10.0.0.1", 0),
            failure("a", "10.0.0.1", 5),
            failure("s", "10.0.0.1", 7),
            failure("b", "10.0.0.1", 10),
        ];
        let stored = HashSet::from(["s".to_owned()]);
        let judge = Judge::new(SuspicionRule::per_hour(3), &batch, &stored);
        assert_eq!(
            judge.verdicts(),
            vec![
                (0, Verdict::Flag(true)),
                (1, Verdict::Flag(false)),
                (4, Verdict::Flag(false)),
            ]
        );
    }

    #[test]
    fn stored_failures_settle_or_defer_the_flag() {
        // The batch spans two hours: the common window is empty, so an IP
        // with stored failures in the union needs an exact count.
        let batch = [failure("a", "10.0.0.1", 0), failure("b", "10.0.0.2", 7200)];
        let mut judge = Judge::new(SuspicionRule::per_hour(3), &batch, &HashSet::new());
        judge.add_counts(KeyKind::Ip, vec![(ip_key("10.0.0.1"), 0, 5)]);
        let verdicts = judge.verdicts();
        assert_eq!(
            verdicts[0],
            (
                0,
                Verdict::Check(vec![Check {
                    kind: KeyKind::Ip,
                    key: ip_key("10.0.0.1"),
                    from: -3600 * SECOND,
                    at: 0,
                    needed: 2,
                }])
            )
        );
        assert_eq!(verdicts[1], (1, Verdict::Flag(false)));

        let mut judge = Judge::new(SuspicionRule::per_hour(3), &batch, &HashSet::new());
        judge.add_counts(KeyKind::Ip, vec![(ip_key("10.0.0.2"), 2, 2)]);
        assert_eq!(judge.verdicts()[1], (1, Verdict::Flag(true)));
    }

    #[test]
    fn the_rule_counts_the_attempt_itself() {
        assert_eq!(SuspicionRule::per_hour(10).others_needed(), 9);
        assert_eq!(SuspicionRule::per_hour(1).others_needed(), 0);
        assert_eq!(SuspicionRule::per_hour(1).window_start(3_600_000_001), 1);
    }
}
