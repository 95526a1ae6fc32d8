//! Development routes' I/O (`dev_mode` only; what they answer is
//! `crate::http::dev`'s): the token request's body, the clocks, a random
//! execution id and the two commands that create the execution.

use super::body::Responder;
use super::{clock, redis};
use crate::config::Config;
use crate::http::answer::Answer;
use crate::http::auth::Identity;
use crate::http::dev::{self, Execution};
use crate::machine::Command;
use wasi::http::types::IncomingRequest;

/// `POST /api/v1/events/dev/token`: a development token for a demo user.
pub fn token(cfg: &Config, req: IncomingRequest, out: Responder) {
    let seconds = cfg.limits.max_body_seconds;
    let answer = dev::can_mint(cfg)
        .and_then(|()| super::publish::read_body(req, dev::MAX_TOKEN_REQUEST_BYTES, seconds))
        .and_then(|body| dev::token(cfg, &body, clock::unix_seconds()));
    out.answer(answer.into());
}

/// `POST /api/v1/events/dev/executions`: starts a simulated execution owned
/// by the caller.
pub fn create_execution(cfg: &Config, who: &Identity, out: Responder) {
    let wall = wasi::clocks::wall_clock::now();
    let random = wasi::random::random::get_random_u64();
    let unix = (wall.seconds as i64, wall.nanoseconds);
    let execution = Execution::new(cfg, who, random, unix);
    let run = |args| redis::reply(Command::new(cfg, args, clock::now()), Command::int);
    let answer = run(execution.record.clone())
        .and_then(|_| run(execution.job.clone()))
        .map(|queued| execution.created(who, queued));
    out.answer(Answer::from(answer));
}
