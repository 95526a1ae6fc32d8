//! `GET /api/v1/events/notifications/stream` on the shared subscription:
//! the minimal stream that proves the p3 model (many streams, one
//! instance, one Redis subscription connection). Live events, heartbeats,
//! token expiry and lifetime; history, resume and stream slots come with
//! the stream machine (issue 12), which this loop will then pump instead.

use super::link::{self, End, Subscription};
use super::{clock, fields, log, wit_bindgen_spawn};
use crate::auth::Identity;
use crate::config::Config;
use crate::error::ApiError;
use crate::events::StreamKind;
use crate::routes::valid_id;
use crate::stream::{Close, Stream};
use futures::future::{self, Either};
use spin_sdk7::wasip3;
use std::pin::pin;
use wasip3::http::types::{ErrorCode, Response};
use wasip3::wit_bindgen::StreamWriter;
use wasip3::{wit_future, wit_stream};

/// Bytes waiting for a slow browser before its stream is dropped.
const MAX_OUTBOX: usize = 1024 * 1024;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: u32 = 2;

/// Subscribes, waits for the confirmation, then answers 200 and streams
/// from this request's task after the handler has returned.
pub async fn stream(cfg: Config, who: Identity) -> Result<Response, ApiError> {
    if !valid_id(&who.user_id) {
        return Err(ApiError::bad_request(
            "the token's user id cannot name a notification channel",
        ));
    }
    let channel = format!("{}{}", cfg.prefixes.notif_channel, who.user_id);
    let ping_ns = clock::secs(cfg.heartbeat_seconds.max(1));
    let sub = link::subscribe(&cfg.redis, cfg.redis_cluster, ping_ns, channel.as_bytes());
    let deadline = clock::now().saturating_add(cfg.redis_timeout_ms.saturating_mul(1_000_000));
    match link::before(deadline, sub.live()).await {
        Some(Ok(())) => {}
        other => {
            let why = if other.is_none() {
                "subscription not confirmed in time"
            } else {
                "subscription failed"
            };
            log("redis_unavailable", &[("detail", why.into())]);
            return Err(ApiError::service_unavailable(RETRY_AFTER_SECONDS));
        }
    }
    let (instance_streams, connections) = link::stats();
    log(
        "stream_open",
        &[
            ("route", "notifications".into()),
            ("instance_streams", instance_streams.into()),
            ("instance_redis_connections", connections.into()),
        ],
    );

    let (body, body_rx) = wit_stream::new();
    let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
    let headers = fields(&[
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),
    ]);
    let (response, _) = Response::new(headers, Some(body_rx), trailers);
    wit_bindgen_spawn(async move {
        let close = pump(&cfg, &who, sub, body).await;
        log("stream_closed", &[("reason", close.reason().into())]);
        // Only a terminal event ends cleanly; anything else aborts the body
        // so fetch-based clients reconnect (DESIGN.md, "How a stream ends").
        let end = match close {
            Close::Terminal => Ok(None),
            other => Err(ErrorCode::InternalError(Some(other.reason().into()))),
        };
        let _ = trailers_tx.write(end).await;
    });
    Ok(response)
}

/// The stream loop: queued messages, the heartbeat and the stream's end
/// deadline, and the browser's pace. Returns why it ended; dropping `sub`
/// releases the channel.
async fn pump(
    cfg: &Config,
    who: &Identity,
    sub: Subscription,
    mut body: StreamWriter<u8>,
) -> Close {
    let mut stream = Stream::new(StreamKind::Notification, Some("notification"), MAX_OUTBOX);
    stream.retry(cfg.retry_ms);
    let beat = clock::secs(cfg.heartbeat_seconds.max(1));
    let opened = clock::now();
    let token_left =
        u64::try_from(who.expires_at.saturating_sub(clock::unix_seconds())).unwrap_or(0);
    let lifetime = clock::secs(cfg.limits.max_stream_seconds).min(clock::secs(token_left));
    let end_at = opened.saturating_add(lifetime);
    let mut next_beat = opened.saturating_add(beat);
    loop {
        if !stream.pending().is_empty() {
            let bytes = stream.pending().to_vec();
            let n = bytes.len();
            let stall =
                clock::now().saturating_add(clock::secs(cfg.limits.write_stall_seconds.max(1)));
            match link::before(stall, body.write_all(bytes)).await {
                Some(rest) if rest.is_empty() => stream.consume(n),
                Some(_) => return Close::ClientGone,
                None => return Close::SlowClient,
            }
            next_beat = clock::now().saturating_add(beat);
        }
        if let Some(close) = stream.closed() {
            if stream.finished() {
                return close;
            }
            continue;
        }
        let wake_at = next_beat.min(end_at);
        match future::select(pin!(sub.next()), pin!(clock::until(wake_at))).await {
            Either::Left((Ok(messages), _)) => {
                for m in messages {
                    if let Err(skip) = stream.message(&m) {
                        log("event_skipped", &[("reason", skip.reason().into())]);
                    }
                }
            }
            Either::Left((Err(End::Lost), _)) => stream.end(Close::RedisLost, cfg.retry_ms),
            Either::Left((Err(End::Overflow), _)) => return Close::SlowClient,
            Either::Right(_) => {
                let now = clock::now();
                if now >= end_at {
                    let why = if lifetime < clock::secs(cfg.limits.max_stream_seconds) {
                        Close::TokenExpired
                    } else {
                        Close::Lifetime
                    };
                    stream.end(why, cfg.retry_ms);
                } else if now >= next_beat {
                    stream.heartbeat();
                }
            }
        }
    }
}
