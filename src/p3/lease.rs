//! The instance's slot lease ([`InstanceLease`]): every stream of this
//! instance lives by one key, renewed here once per heartbeat interval on
//! the command connection while the instance serves streams, instead of
//! one renewal per stream.

use super::commands::Client;
use super::{clock, print, pump, wit_bindgen_spawn};
use crate::config::Config;
use crate::limits::InstanceLease;
use crate::machine::Request;
use crate::session::Tag;
use spin_sdk7::wasip3;
use std::cell::Cell;

thread_local! {
    /// This instance's name: random, made once.
    static NAME: String = format!("{:016x}", wasip3::random::random::get_random_u64());
    /// Whether the renewal task runs.
    static KEEPING: Cell<bool> = const { Cell::new(false) };
}

/// This instance's name, for [`crate::machine::Opening::instance`].
pub fn name() -> String {
    NAME.with(String::clone)
}

/// Starts the renewal task unless it runs (or no lease applies); it ends
/// at the first renewal that finds the instance serving no stream.
pub fn keep(cfg: &Config) {
    if KEEPING.get() {
        return;
    }
    let Some(mut lease) = InstanceLease::new(&name(), cfg, clock::now()) else {
        return;
    };
    KEEPING.set(true);
    let client = Client::new(
        &cfg.redis,
        cfg.redis_cluster,
        cfg.redis_timeout_ms,
        cfg.stream.entry_bytes,
        0,
    );
    wit_bindgen_spawn(async move {
        loop {
            let due = lease.poll_timeout();
            clock::until(due).await;
            if pump::serving() == 0 {
                break;
            }
            let Some(args) = lease.handle_timeout(clock::now()) else {
                continue;
            };
            client.send(vec![Request {
                tag: Tag::Renew,
                args,
            }]);
            for (_, outcome) in client.answers().await {
                let outcome = outcome.as_ref().map(|_| ()).map_err(String::as_str);
                print(lease.answered(outcome).into_iter());
            }
        }
        KEEPING.set(false);
    });
}
