//! Connections on sled.

use super::*;

impl ConnectionRecords for Store {
    fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        self.connections
            .insert(c.id.as_str(), serde_json::to_vec(&c.sealed(&self.cipher))?)?;
        Ok(())
    }

    fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        self.connections
            .iter()
            .values()
            .map(|v| Connection::opened(&v?, &self.cipher))
            .collect()
    }

    fn set_last_delivery(&self, id: &ConnectionId, ms: u64) -> Result<(), StoreError> {
        self.last_delivery.insert(id.as_str(), &ms.to_be_bytes())?;
        Ok(())
    }

    fn last_deliveries(&self) -> Result<Vec<(ConnectionId, u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.last_delivery.iter() {
            let (k, v) = kv?;
            let id = std::str::from_utf8(&k).ok().and_then(ConnectionId::parse);
            let ms = <[u8; 8]>::try_from(v.as_ref()).map(u64::from_be_bytes).ok();
            if let (Some(id), Some(ms)) = (id, ms) {
                out.push((id, ms));
            }
        }
        Ok(out)
    }

    fn remove_connection(&self, id: &ConnectionId) -> Result<bool, StoreError> {
        let existed = self.connections.remove(id.as_str())?.is_some();
        self.last_delivery.remove(id.as_str())?;
        for kv in self.outbox.scan_prefix(id.as_str()) {
            let (key, v) = kv?;
            self.outbox.remove(key)?;
            let rec = decode::<OutboxRecord>(&v);
            if let Ok(rec) = &rec {
                self.unindex(rec.id.as_str());
            }
            let retrying = rec.is_ok_and(|r| r.attempts > 0);
            self.count(|c| c.left_queue(retrying));
        }
        Ok(existed)
    }
}
