//! RESP encoding and decoding (owned by a helper; placeholder).
