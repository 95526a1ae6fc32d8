//! Development routes' I/O (`dev_mode` only; what they answer is
//! `crate::http::dev`'s), as `src/host/dev.rs` for the p2 builds: the token
//! request's body, the clocks, a random execution id and the two commands
//! that create the execution.

use super::{clock, commands, read_body};
use crate::config::Config;
use crate::http::answer::Answer;
use crate::http::auth::Identity;
use crate::http::dev::{self, Execution};
use crate::machine::Command;
use spin_sdk7::wasip3;
use wasip3::http::types::Request;

/// `POST /api/v1/events/dev/token`: a development token for a demo user.
pub async fn token(cfg: &Config, req: Request, declared: Option<u64>) -> Answer {
    let limit = dev::MAX_TOKEN_REQUEST_BYTES;
    let minted = match dev::can_mint(cfg) {
        Ok(()) => match read_body(req, declared, limit, cfg.limits.max_body_seconds).await {
            Ok(body) => dev::token(cfg, &body, clock::unix_seconds()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    minted.into()
}

/// `POST /api/v1/events/dev/executions`: starts a simulated execution owned
/// by the caller.
pub async fn create_execution(cfg: &Config, who: &Identity) -> Answer {
    let wall = wasip3::clocks::system_clock::now();
    let random = wasip3::random::random::get_random_u64();
    let execution = Execution::new(cfg, who, random, (wall.seconds, wall.nanoseconds));
    let run = |args| commands::reply(Command::new(cfg, args, clock::now()), Command::int);
    let created = match run(execution.record.clone()).await {
        Ok(_) => run(execution.job.clone()).await,
        Err(e) => Err(e),
    };
    Answer::from(created.map(|queued| execution.created(who, queued)))
}
