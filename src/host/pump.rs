//! Pumps one stream ([`OwnConnection`]) over WASI: its Redis connection, one timer
//! and, only while bytes are pending, the response body. Every decision is
//! the machine's; this file moves bytes and reads the clock.

use super::body::{Responder, SseBody};
use super::redis::{self, Link};
use super::{clock, print};
use crate::config::Config;
use crate::http::auth::Identity;
use crate::machine::own::OwnConnection;
use crate::machine::timers::BodyEnd;
use crate::machine::{Event, Opening, Topic};
use wasi::io::poll::poll;

/// Serves a stream route until the stream ends.
pub fn serve(
    cfg: &Config,
    who: &Identity,
    topic: Topic,
    last_event_id: Option<&str>,
    out: Responder,
) {
    let req = Opening {
        topic,
        last_event_id,
        member: format!("{:016x}", wasi::random::random::get_random_u64()),
        instance: None,
        now: clock::now(),
        unix_now: clock::unix_seconds(),
    };
    let mut m = OwnConnection::open(cfg, who, req);
    let mut link = Link::default();
    let mut out = Some(out);
    let mut body: Option<SseBody> = None;
    loop {
        // Commands after the answer: a refusal is not held up by the
        // slot given back on a fresh connection.
        link.connect_and_transmit(&mut m);
        print(m.logs());
        let event = m.poll_event();
        if !matches!(event, Some(Event::Refuse(_))) {
            link.run_commands(&mut m);
        }
        match event.or_else(|| m.poll_event()) {
            Some(Event::Refuse(e)) => {
                if let Some(out) = out.take() {
                    out.error(&e);
                }
                break;
            }
            Some(Event::Start) => match out.take().map(Responder::sse) {
                Some(Ok(b)) => body = Some(b),
                _ => m.handle_body_gone(clock::now()),
            },
            Some(Event::Finished(why)) => {
                // Clean or aborted (dropped, after the grace) is the
                // machine's call.
                if let Some(b) = body.take() {
                    match BodyEnd::of(why, None) {
                        BodyEnd::Clean => b.finish(),
                        BodyEnd::Abort { .. } => drop(b),
                    }
                }
                if let Some(out) = out.take() {
                    out.error(&Event::unstarted());
                }
                break;
            }
            None => {}
        }
        if let Some(b) = body.as_mut() {
            write(&mut m, b);
        }
        link.wait(&mut m, body.as_ref());
    }
    // The machine's last words: the slot given back.
    link.connect_and_transmit(&mut m);
    link.run_commands(&mut m);
    print(m.logs());
}

/// Writes what the body takes now.
fn write(m: &mut OwnConnection, body: &mut SseBody) {
    if m.pending().is_empty() {
        return;
    }
    match body.write_some(m.pending()) {
        Ok(n) => m.handle_body_took(n, clock::now()),
        Err(_) => m.handle_body_gone(clock::now()),
    }
}

impl Link {
    /// Runs the commands off the stream's connection to their end.
    fn run_commands(&mut self, m: &mut OwnConnection) {
        for mut cmd in m.poll_commands(clock::now()) {
            redis::run(&mut cmd);
            m.handle_command(cmd, clock::now()); // its log lines go to the machine's
        }
    }

    /// Blocks in `poll` on Redis (while the machine reads it), the body
    /// (only with bytes pending: it is ready whenever writable) and the
    /// machine's next deadline; feeds what happened.
    fn wait(&mut self, m: &mut OwnConnection, body: Option<&SseBody>) {
        let Some(deadline) = m.poll_timeout() else {
            return;
        };
        let timer = clock::timer_at(deadline);
        let writable = body
            .filter(|_| !m.pending().is_empty())
            .and_then(SseBody::writable);
        let mut set = vec![&timer];
        let redis = self.ready.as_ref().filter(|_| m.wants_redis());
        set.extend(redis);
        set.extend(writable.as_ref());
        let ready = poll(&set);
        if redis.is_some() && ready.contains(&1) {
            if let Some(conn) = self.conn.as_mut() {
                match conn.read_available() {
                    Ok(bytes) => m.handle_bytes(&bytes, clock::now()),
                    Err(e) => m.handle_redis_failure(&e, clock::now()),
                }
            }
        }
        m.handle_timeout(clock::now());
    }
}
