//! RESP decoding: arbitrary bytes fed whole or in arbitrary pieces never
//! panic, never buffer more than the limit, and decode to the same values
//! (and fail, or not) the same way; encoded commands decode back to arrays
//! of bulk strings however they are split.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sse_gateway::redis::resp::{encode_command, Decoder, Value};
use sse_gateway_fuzz::normalized;

#[derive(Debug, Arbitrary)]
enum Input {
    /// Arbitrary bytes; `cuts` are piece lengths, `limit` the max_buffer.
    Raw {
        bytes: Vec<u8>,
        cuts: Vec<u8>,
        limit: u16,
    },
    /// Commands encoded by `encode_command`, then split.
    Commands {
        commands: Vec<Vec<Vec<u8>>>,
        cuts: Vec<u8>,
    },
}

/// Feeds `bytes` in pieces of the given lengths (the rest at the end),
/// draining after each; returns the values and whether decoding failed.
fn decode(bytes: &[u8], cuts: &[u8], limit: usize) -> (Vec<Value>, bool) {
    let mut d = Decoder::new(limit);
    let mut values = Vec::new();
    let mut rest = bytes;
    let mut pieces = cuts.iter().map(|&c| usize::from(c));
    loop {
        let n = pieces.next().unwrap_or(rest.len()).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        d.feed(piece);
        loop {
            match d.next() {
                Ok(Some(v)) => values.push(v),
                Ok(None) => break,
                Err(_) => {
                    // Poisoned: the same error every time after.
                    assert!(d.next().is_err());
                    return (values, true);
                }
            }
        }
        // An incomplete frame beyond the limit is an error, never buffered.
        assert!(d.buffered() <= limit, "buffered {} > {limit}", d.buffered());
        if rest.is_empty() {
            return (values, false);
        }
    }
}

fuzz_target!(|input: Input| match input {
    Input::Raw { bytes, cuts, limit } => {
        let limit = usize::from(limit).max(1);
        let (whole, whole_failed) = decode(&bytes, &[], limit);
        let (split, split_failed) = decode(&bytes, &cuts, limit);
        assert_eq!(normalized(whole), normalized(split));
        assert_eq!(whole_failed, split_failed);
    }
    Input::Commands { commands, cuts } => {
        let mut bytes = Vec::new();
        for args in &commands {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            encode_command(&mut bytes, &args);
        }
        let (values, failed) = decode(&bytes, &cuts, bytes.len().max(1));
        assert!(!failed);
        let expected: Vec<Value> = commands
            .into_iter()
            .map(|args| Value::Array(args.into_iter().map(Value::Bulk).collect()))
            .collect();
        assert_eq!(values, expected);
    }
});
