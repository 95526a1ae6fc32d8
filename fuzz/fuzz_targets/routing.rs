//! Routing: any method and path is answered without panicking; an id that
//! reaches a route passes `valid_id` (so it is safe in a Redis name), the
//! route's canonical path maps back to the same route, and errors are only
//! 400, 404 or 405 (with `allow`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_gateway::http::routes::{route, valid_id, Route};

/// The id a route carries into Redis names, if any.
fn id_of(r: &Route) -> Option<&str> {
    match r {
        Route::ExecutionStream(id)
        | Route::PublishExecution(id)
        | Route::ReplayStatus(id)
        | Route::PublishNotification(id) => Some(id),
        _ => None,
    }
}

/// The plain path of an id-carrying route (others are fixed paths).
fn canonical(r: &Route) -> Option<String> {
    let base = "/api/v1/events";
    Some(match r {
        Route::ExecutionStream(id) | Route::PublishExecution(id) => {
            format!("{base}/executions/{id}")
        }
        Route::ReplayStatus(id) => format!("{base}/replay/{id}/status"),
        Route::PublishNotification(id) => format!("{base}/notifications/{id}"),
        _ => return None,
    })
}

fuzz_target!(|input: (String, String)| {
    let (method, path) = input;
    // Also try the path under the API prefix so the fuzzer needn't find it.
    for path in [path.clone(), format!("/api/v1/events/{path}")] {
        match route(&method, &path) {
            Ok(r) => {
                if let Some(id) = id_of(&r) {
                    assert!(valid_id(id), "{id:?} from {path:?}");
                    assert!(path.contains(id));
                }
                if let Some(plain) = canonical(&r) {
                    assert_eq!(route(&method, &plain).as_ref(), Ok(&r));
                }
            }
            Err(e) => {
                assert!(matches!(e.status, 400 | 404 | 405), "{}", e.status);
                if e.status == 405 {
                    assert!(e.headers.iter().any(|(name, _)| *name == "allow"));
                }
            }
        }
    }
});
