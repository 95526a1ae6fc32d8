//! A publish request (`POST` of an event) as a one-shot command: who may
//! publish, the event's validation, the atomic history + publish script,
//! and the `202` answer.

use super::command::Command;
use crate::config::Config;
use crate::http::auth::{Identity, Role};
use crate::http::error::ApiError;
use crate::http::routes::Route;
use crate::redis::session::Tag;
use crate::rules::events::{prepare_publish, StreamKind};
use crate::rules::history;

/// A publish route, checked before its body is read.
pub struct Publish {
    kind: StreamKind,
    execution_id: Option<String>,
    channel: String,
    /// The largest body accepted (413 beyond).
    pub max_body: usize,
}

impl Publish {
    /// The publish that `route` asks for, if `who` may (service tokens only).
    /// `None` when `route` is not a publish route.
    pub fn new(cfg: &Config, who: &Identity, route: &Route) -> Option<Result<Publish, ApiError>> {
        let p = &cfg.prefixes;
        let (kind, execution_id, channel) = match route {
            Route::PublishExecution(id) => (
                StreamKind::Execution,
                Some(id.clone()),
                format!("{}{id}", p.exec_channel),
            ),
            Route::PublishNotification(user) => (
                StreamKind::Notification,
                None,
                format!("{}{user}", p.notif_channel),
            ),
            _ => return None,
        };
        if who.role != Role::Service {
            return Some(Err(ApiError::forbidden()));
        }
        Some(Ok(Publish {
            kind,
            execution_id,
            channel,
            max_body: cfg.max_event_bytes,
        }))
    }

    /// The command that publishes `body` (400 if it is not a valid event).
    pub fn command(&self, cfg: &Config, body: &[u8], now: u64) -> Result<Command, ApiError> {
        let event = prepare_publish(self.kind, body, self.execution_id.as_deref())
            .map_err(ApiError::bad_request)?;
        let key = history::key(&cfg.prefixes.history_key, &self.channel);
        let args = history::publish_command(
            &key,
            &self.channel,
            &event,
            cfg.history,
            cfg.redis_cluster,
            cfg.max_event_bytes,
        );
        Ok(Command::tagged(cfg, Tag::Publish, args, now))
    }

    /// The `202` body, `{"id", "channel"}`, once the command ran.
    pub fn answer(&self, cmd: &mut Command) -> Result<Vec<u8>, ApiError> {
        let id = cmd.text()?;
        Ok(serde_json::json!({ "id": id, "channel": self.channel })
            .to_string()
            .into_bytes())
    }
}
