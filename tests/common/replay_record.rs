//! The replay session record `replay:{session_id}` the API keeps: a replay
//! status stream starts with it (and is a 404 without it).

use super::RedisServer;

impl RedisServer {
    /// HSET `replay:{session}` with `status` (the other fields default).
    pub fn put_replay_session(&self, session: &str, status: &str) {
        redis::cmd("HSET")
            .arg(format!("replay:{session}"))
            .arg("status")
            .arg(status)
            .query::<i64>(&mut self.conn())
            .unwrap_or_else(|e| panic!("HSET replay:{session}: {e}"));
    }
}
