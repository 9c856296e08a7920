//! The PostgreSQL schema's versions, embedded in the binary, and the upgrade between them.
//!
//! In: a connection. Out: the schema at this binary's version, or what stands in the way.
//! Guarantees: each migration runs once, in order, in a transaction of its own, recorded in
//! `cardwire_migrations`; instances starting together take turns through an advisory lock, so
//! the second finds the work done; a database upgraded by a newer cardwire is refused rather
//! than used with tables this version does not know; checking changes nothing.

/// Every migration, oldest first: (version, name, SQL). A migration, once released, never
/// changes: a change is a new one.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "state", include_str!("migrations/0001_state.sql")),
    (
        2,
        "instances",
        include_str!("migrations/0002_instances.sql"),
    ),
    (
        3,
        "message_refs",
        include_str!("migrations/0003_message_refs.sql"),
    ),
    (
        4,
        "source_apps",
        include_str!("migrations/0004_source_apps.sql"),
    ),
    (
        5,
        "source_hooks",
        include_str!("migrations/0005_source_hooks.sql"),
    ),
];

/// The advisory lock's key: "cardwire" in ASCII.
const LOCK: i64 = 0x6361_7264_7769_7265;

/// Where a database stands against this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The versions applied, in order.
    pub applied: Vec<i32>,
    /// This binary's migrations not applied yet: (version, name).
    pub pending: Vec<(i32, String)>,
    /// Versions applied that this binary does not know (a newer cardwire upgraded it).
    pub unknown: Vec<i32>,
}

impl Status {
    /// Whether the schema is exactly this binary's.
    pub fn up_to_date(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }

    /// For people: what is applied, what is pending.
    pub fn describe(&self) -> String {
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if !self.unknown.is_empty() {
            return format!(
                "the database has schema versions {:?}, newer than this cardwire's {known}: \
                 run the newer cardwire, or restore a backup from before its upgrade",
                self.unknown
            );
        }
        if self.pending.is_empty() {
            return format!("up to date (schema version {known})");
        }
        let pending: Vec<String> = self
            .pending
            .iter()
            .map(|(v, n)| format!("{v} ({n})"))
            .collect();
        format!(
            "{} migration(s) to apply: {} (cardwire applies them when it starts)",
            pending.len(),
            pending.join(", ")
        )
    }
}

/// Reads where the database stands, changing nothing.
pub fn status(client: &mut postgres::Client) -> Result<Status, postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('cardwire_migrations') IS NOT NULL", &[])?
        .get(0);
    let applied: Vec<i32> = if exists {
        client
            .query(
                "SELECT version FROM cardwire_migrations ORDER BY version",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    Ok(compare(&applied))
}

/// Applies what is pending, under the advisory lock; returns the status it found before.
pub fn migrate(client: &mut postgres::Client) -> Result<Status, postgres::Error> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK])?;
    let result = (|| {
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS cardwire_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )?;
        let before = status(client)?;
        if before.unknown.is_empty() {
            for (version, name, sql) in MIGRATIONS {
                if before.applied.contains(version) {
                    continue;
                }
                let mut tx = client.transaction()?;
                tx.batch_execute(sql)?;
                tx.execute(
                    "INSERT INTO cardwire_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )?;
                tx.commit()?;
                tracing::info!(version, name, "PostgreSQL schema upgraded");
            }
        }
        Ok(before)
    })();
    // Released whatever happened; a lost connection releases it anyway.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]);
    result
}

/// The applied versions against this binary's migrations.
pub fn compare(applied: &[i32]) -> Status {
    Status {
        applied: applied.to_vec(),
        pending: MIGRATIONS
            .iter()
            .filter(|(v, _, _)| !applied.contains(v))
            .map(|(v, n, _)| (*v, n.to_string()))
            .collect(),
        unknown: applied
            .iter()
            .copied()
            .filter(|v| !MIGRATIONS.iter().any(|(m, _, _)| m == v))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_unique() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(versions.first(), Some(&1));
    }

    #[test]
    fn a_fresh_database_has_everything_pending_and_a_newer_one_is_named() {
        let fresh = compare(&[]);
        assert!(!fresh.up_to_date());
        assert_eq!(fresh.pending.len(), MIGRATIONS.len());
        assert!(fresh
            .describe()
            .contains("cardwire applies them when it starts"));

        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.0).collect();
        let current = compare(&all);
        assert!(current.up_to_date(), "{current:?}");
        assert!(current.describe().starts_with("up to date"));

        let mut newer = all.clone();
        newer.push(999);
        let newer = compare(&newer);
        assert!(!newer.up_to_date());
        assert_eq!(newer.unknown, vec![999]);
        assert!(
            newer.describe().contains("newer than this cardwire's"),
            "{}",
            newer.describe()
        );
    }
}
