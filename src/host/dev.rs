//! Development helpers, served only when `dev_mode` is on: the demo page,
//! local token minting and simulated executions.

use super::body::Responder;
use crate::auth::Identity;
use crate::config::Config;
use crate::error::ApiError;
use spin_sdk::http::IncomingRequest;

/// `GET /demo`: the demo page.
pub fn demo_page(out: Responder) {
    out.error(&ApiError::not_found())
}

/// `POST /api/v1/events/dev/token`: a development token.
pub fn token(_cfg: &Config, _req: IncomingRequest, out: Responder) {
    out.error(&ApiError::not_found())
}

/// `POST /api/v1/events/dev/executions`: starts a simulated execution.
pub fn create_execution(_cfg: &Config, _who: &Identity, out: Responder) {
    out.error(&ApiError::not_found())
}
