//! A request body's budget (the publish route): how many bytes, and by
//! when they must all have arrived. The shells read the body; this decides
//! when to stop with a 413 or a 408.

use crate::http::error::ApiError;

/// The length a request declares (its first `content-length` value), if
/// it is a number; the budget still counts the bytes that arrive.
pub fn content_length(values: &[Vec<u8>]) -> Option<u64> {
    let first = values.first()?;
    std::str::from_utf8(first).ok()?.trim().parse().ok()
}

/// A request body being read: at most `max_bytes` (413), and complete
/// before `deadline` (408), so neither a huge nor a never-ending body can
/// hold an instance. Times are the shell's monotonic nanoseconds.
#[derive(Debug)]
pub struct BodyBudget {
    max_bytes: usize,
    deadline: u64,
    max_seconds: u64,
    buf: Vec<u8>,
}

impl BodyBudget {
    /// Starts reading at `now`; a declared `content-length` over the limit
    /// is refused before any byte is read.
    pub fn new(
        declared: Option<u64>,
        max_bytes: usize,
        max_seconds: u64,
        now: u64,
    ) -> Result<BodyBudget, ApiError> {
        if declared.is_some_and(|n| n > max_bytes as u64) {
            return Err(ApiError::payload_too_large(max_bytes));
        }
        Ok(BodyBudget {
            max_bytes,
            deadline: now.saturating_add(max_seconds.saturating_mul(1_000_000_000)),
            max_seconds,
            buf: Vec::new(),
        })
    }

    /// The instant the whole body must have arrived by.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }

    /// Takes bytes that arrived at `now`.
    pub fn push(&mut self, chunk: &[u8], now: u64) -> Result<(), ApiError> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > self.max_bytes {
            return Err(ApiError::payload_too_large(self.max_bytes));
        }
        self.check_time(now)
    }

    /// 408 once the deadline has passed.
    pub fn check_time(&self, now: u64) -> Result<(), ApiError> {
        if now >= self.deadline {
            return Err(ApiError::request_timeout(self.max_seconds));
        }
        Ok(())
    }

    /// The complete body.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn declared_length_is_the_first_number() {
        let v = |items: &[&str]| {
            items
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(content_length(&v(&[" 42 "])), Some(42));
        assert_eq!(content_length(&v(&["7", "9"])), Some(7));
        assert_eq!(content_length(&v(&[])), None);
        assert_eq!(content_length(&v(&["-1"])), None);
        assert_eq!(content_length(&v(&["12abc"])), None);
    }

    #[test]
    fn body_budget_bounds_size_and_time() {
        assert_eq!(BodyBudget::new(Some(11), 10, 5, 0).unwrap_err().status, 413);
        let mut b = BodyBudget::new(Some(10), 10, 5, 7).unwrap();
        assert_eq!(b.deadline(), 7 + 5 * S);
        b.push(b"12345", S).unwrap();
        b.push(b"67890", 2 * S).unwrap();
        assert_eq!(b.finish(), b"1234567890");
        // A body that lies about its length is cut at the limit.
        let mut b = BodyBudget::new(Some(1), 10, 5, 0).unwrap();
        assert_eq!(b.push(&[0; 11], 0).unwrap_err().status, 413);
        // One byte, then silence.
        let mut b = BodyBudget::new(Some(100), 1000, 5, 0).unwrap();
        b.push(b"{", S).unwrap();
        assert!(b.check_time(5 * S - 1).is_ok());
        let e = b.check_time(5 * S).unwrap_err();
        assert_eq!((e.status, e.kind), (408, "RequestTimeoutError"));
        assert_eq!(b.push(b"}", 6 * S).unwrap_err().status, 408);
        // Huge limits saturate instead of wrapping.
        let b = BodyBudget::new(None, 10, u64::MAX, u64::MAX - 1).unwrap();
        assert_eq!(b.deadline(), u64::MAX);
    }
}
