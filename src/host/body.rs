//! The HTTP response: JSON answers and the streaming SSE body.
//!
//! The SSE body is written without blocking: `write_some` takes what the
//! host's output stream has room for, and the stream loop waits on
//! [`SseBody::writable`] only while bytes are still pending (an output
//! stream's pollable is ready whenever it has room, so waiting on it while
//! idle would spin).

use super::clock;
use crate::http::answer::Answer;
use crate::http::error::ApiError;
use crate::machine::timers;
use wasi::http::types::{Headers, OutgoingBody, OutgoingResponse, ResponseOutparam};
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

    /// The response head: `extra`, then the common headers.
    fn response(&self, status: u16, extra: &[(&'static str, String)]) -> OutgoingResponse {
        let entries: Vec<(String, Vec<u8>)> = (extra.iter().chain(&self.common))
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let headers = Headers::from_list(&entries).unwrap_or_else(|_| Headers::new());
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(status);
        STATUS.with(|s| s.set(status));
        response
    }

    /// Sends a complete answer, then prints its log lines.
    pub fn answer(self, answer: Answer) {
        let response = self.response(answer.status, &answer.headers);
        if let Ok(outgoing) = response.body() {
            ResponseOutparam::set(self.out, Ok(response));
            if let Ok(stream) = outgoing.write() {
                for chunk in answer.body.chunks(4096) {
                    if stream.blocking_write_and_flush(chunk).is_err() {
                        break;
                    }
                }
                drop(stream);
            }
            let _ = OutgoingBody::finish(outgoing, None);
        }
        super::print(answer.logs.into_iter());
    }

    /// Sends an [`ApiError`] as `{"detail", "type"}` JSON.
    pub fn error(self, err: &ApiError) {
        self.answer(Answer::from(err));
    }

    /// Sends the `200` head with the SSE headers; the body stays open.
    pub fn sse(self) -> Result<SseBody, Gone> {
        let response = self.response(200, &Answer::stream_head().headers);
        let body = response.body().map_err(|_| Gone)?;
        ResponseOutparam::set(self.out, Ok(response));
        let stream = body.write().map_err(|_| Gone)?;
        Ok(SseBody {
            stream: Some(stream),
            body: Some(body),
            last_write: None,
        })
    }
}

/// An open `text/event-stream` response body. [`SseBody::finish`] ends it
/// cleanly (HTTP/1.1: the last chunk); dropping it aborts it: WASI HTTP 0.2
/// treats an `outgoing-body` dropped unfinished as incomplete, so the host
/// ends the response without its last chunk. Which end applies is the
/// machine's call (`Close::ends_cleanly`).
pub struct SseBody {
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
    /// Monotonic time of the last write that took bytes; `None` before the
    /// first and once a write failed (the clock may start at 0).
    last_write: Option<u64>,
}

/// The browser can no longer be written to.
#[derive(Debug)]
pub struct Gone;

impl SseBody {
    /// Writes as much of `bytes` as the host takes now; returns how much.
    pub fn write_some(&mut self, bytes: &[u8]) -> Result<usize, Gone> {
        let written = self.try_write(bytes);
        self.last_write = match written {
            Ok(0) => self.last_write,
            Ok(_) => Some(clock::now()),
            Err(Gone) => None,
        };
        written
    }

    fn try_write(&self, bytes: &[u8]) -> Result<usize, Gone> {
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

    /// Ends the response cleanly (the browser reads "complete").
    pub fn finish(mut self) {
        drop(self.stream.take());
        if let Some(body) = self.body.take() {
            let _ = OutgoingBody::finish(body, None);
        }
    }
}

impl Drop for SseBody {
    /// Aborts the response unless it was finished (after the grace).
    fn drop(&mut self) {
        if let (Some(_), Some(until)) = (&self.body, timers::abort_at(self.last_write)) {
            if clock::now() < until {
                clock::timer_at(until).block();
            }
        }
        drop(self.stream.take());
        drop(self.body.take());
    }
}
