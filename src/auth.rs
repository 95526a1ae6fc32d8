//! JWT verification (owned by a helper; placeholder).
