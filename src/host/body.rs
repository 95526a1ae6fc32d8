//! The HTTP response: JSON answers and the streaming SSE body.
//!
//! The SSE body is written without blocking: `write_some` takes what the
//! host's output stream has room for, and the stream loop waits on
//! [`SseBody::writable`] only while bytes are still pending (an output
//! stream's pollable is ready whenever it has room, so waiting on it while
//! idle would spin).

use crate::error::ApiError;
use spin_sdk::http::{Headers, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::poll::Pollable;
use wasi::io::streams::OutputStream;

thread_local! {
    /// The status this request was answered with (one instance = one
    /// request), for the `request` log line and span.
    static STATUS: std::cell::Cell<u16> = const { std::cell::Cell::new(0) };
}

/// The status sent, 0 if none was.
pub fn status() -> u16 {
    STATUS.with(|s| s.get())
}

fn headers(list: &[(&str, &str)]) -> Headers {
    let entries: Vec<(String, Vec<u8>)> = list
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    Headers::from_list(&entries).unwrap_or_else(|_| Headers::new())
}

/// Where a request's answer goes, with the headers every answer carries
/// (CORS). Consumed by whichever answer is sent, so there is exactly one.
pub struct Responder {
    out: ResponseOutparam,
    common: Vec<(&'static str, String)>,
}

impl Responder {
    /// Wraps the host's response slot.
    pub fn new(out: ResponseOutparam) -> Self {
        Responder {
            out,
            common: Vec::new(),
        }
    }

    /// Adds headers to whatever answer is sent.
    pub fn add_headers(&mut self, headers: Vec<(&'static str, String)>) {
        self.common.extend(headers);
    }

    fn response(&self, status: u16, extra: &[(&str, &str)]) -> OutgoingResponse {
        let common = self.common.iter().map(|(k, v)| (*k, v.as_str()));
        let all: Vec<(&str, &str)> = extra.iter().copied().chain(common).collect();
        let response = OutgoingResponse::new(headers(&all));
        let _ = response.set_status_code(status);
        STATUS.with(|s| s.set(status));
        response
    }

    /// Sends a complete response with a small body.
    pub fn send(self, status: u16, extra: &[(&str, &str)], body: &[u8]) {
        let response = self.response(status, extra);
        let Ok(outgoing) = response.body() else {
            return;
        };
        self.out.set(response);
        if let Ok(stream) = outgoing.write() {
            for chunk in body.chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    break;
                }
            }
            drop(stream);
        }
        let _ = OutgoingBody::finish(outgoing, None);
    }

    /// Sends an [`ApiError`] as `{"detail", "type"}` JSON.
    pub fn error(self, err: &ApiError) {
        let mut extra: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        extra.extend(err.headers.iter().map(|(k, v)| (*k, v.as_str())));
        self.send(err.status, &extra, &err.body());
    }

    /// Sends a JSON body with `status`.
    pub fn json(self, status: u16, body: &[u8]) {
        self.send(status, &[("content-type", "application/json")], body);
    }

    /// Sends the `200` head with the SSE headers; the body stays open.
    pub fn sse(self) -> Result<SseBody, Gone> {
        let response = self.response(
            200,
            &[
                ("content-type", "text/event-stream"),
                ("cache-control", "no-cache"),
                ("x-accel-buffering", "no"),
            ],
        );
        let body = response.body().map_err(|_| Gone)?;
        self.out.set(response);
        let stream = body.write().map_err(|_| Gone)?;
        Ok(SseBody {
            stream: Some(stream),
            body: Some(body),
        })
    }
}

/// An open `text/event-stream` response body.
pub struct SseBody {
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
}

/// The browser can no longer be written to.
#[derive(Debug)]
pub struct Gone;

impl SseBody {
    /// Writes as much of `bytes` as the host takes now; returns how much.
    pub fn write_some(&mut self, bytes: &[u8]) -> Result<usize, Gone> {
        let stream = self.stream.as_ref().ok_or(Gone)?;
        let mut written = 0;
        while written < bytes.len() {
            let room = stream.check_write().map_err(|_| Gone)? as usize;
            if room == 0 {
                break;
            }
            let n = room.min(bytes.len() - written);
            stream
                .write(&bytes[written..written + n])
                .map_err(|_| Gone)?;
            written += n;
        }
        if written > 0 {
            stream.flush().map_err(|_| Gone)?;
        }
        Ok(written)
    }

    /// Ready when the host has room again (wait on it only with bytes pending).
    pub fn writable(&self) -> Option<Pollable> {
        self.stream.as_ref().map(|s| s.subscribe())
    }
}

impl Drop for SseBody {
    /// Ends the response cleanly (terminal chunk) when the stream is over.
    fn drop(&mut self) {
        drop(self.stream.take());
        if let Some(body) = self.body.take() {
            let _ = OutgoingBody::finish(body, None);
        }
    }
}
