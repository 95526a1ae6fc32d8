//! The HTTP layer: the request gate (route, configuration, CORS, header
//! budget, authentication), the answers and errors, the publish body's
//! budget and the `dev_mode` routes. It knows no Redis connection.

pub mod answer;
pub mod auth;
pub mod body;
pub mod cors;
pub mod dev;
pub mod dev_token;
pub mod error;
pub mod gate;
pub mod identity;
pub mod routes;
