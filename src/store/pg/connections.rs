//! Connections on PostgreSQL.

use super::rows::*;
use super::{ms, unms, PgStore};
use crate::ids::ConnectionId;
use crate::store::{Connection, ConnectionRecords, StoreError};

impl ConnectionRecords for PgStore {
    fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        let (id, record) = (c.id.as_str().to_string(), json(&c.sealed(&self.cipher))?);
        self.pool.run(move |db| {
            // Other instances read their connections again when told.
            db.query(
                "WITH up AS (INSERT INTO connections (id, record) VALUES ($1, $2)
                             ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record)
                 SELECT pg_notify('cardwire', 'c')",
                &[&id, &record],
            )
            .map(drop)
        })
    }

    fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        let rows: Vec<String> = self.pool.run(|db| {
            Ok(db
                .query("SELECT record FROM connections ORDER BY id", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        rows.iter()
            .map(|r| Connection::opened(r.as_bytes(), &self.cipher))
            .collect()
    }

    fn set_last_delivery(&self, id: &ConnectionId, at: u64) -> Result<(), StoreError> {
        let id = id.as_str().to_string();
        self.pool.run(move |db| {
            db.execute(
                "INSERT INTO last_delivery (connection, at_ms) VALUES ($1, $2)
                 ON CONFLICT (connection) DO UPDATE SET at_ms = EXCLUDED.at_ms",
                &[&id, &ms(at)],
            )
            .map(drop)
        })
    }

    fn last_deliveries(&self) -> Result<Vec<(ConnectionId, u64)>, StoreError> {
        self.pool.run(|db| {
            Ok(db
                .query("SELECT connection, at_ms FROM last_delivery", &[])?
                .iter()
                .filter_map(|r| {
                    let id: String = r.get(0);
                    Some((ConnectionId::parse(&id)?, unms(r.get(1))))
                })
                .collect())
        })
    }

    fn remove_connection(&self, id: &ConnectionId) -> Result<bool, StoreError> {
        let id = id.as_str().to_string();
        self.pool
            .run(move |db| {
                let mut tx = db.transaction()?;
                let existed = tx.execute("DELETE FROM connections WHERE id = $1", &[&id])? > 0;
                tx.execute("DELETE FROM last_delivery WHERE connection = $1", &[&id])?;
                let dropped = tx.query(
                    "DELETE FROM outbox WHERE connection = $1 RETURNING retrying",
                    &[&id],
                )?;
                let retrying = dropped.iter().filter(|r| r.get::<_, bool>(0)).count();
                tx.execute("SELECT pg_notify('cardwire', 'c')", &[])?;
                tx.commit()?;
                Ok((existed, (dropped.len(), retrying)))
            })
            .map(|(existed, (dropped, retrying))| {
                self.count(|c| c.dropped(dropped, retrying));
                existed
            })
    }
}
