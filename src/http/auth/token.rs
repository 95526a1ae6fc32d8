//! Which credential a request carries: the `Authorization: Bearer` token,
//! else the `access_token` cookie; two different ones are refused.

use super::AuthError;

/// Picks the request's one credential from its raw header values.
///
/// - `Authorization: Bearer <t>` (scheme case-insensitive) comes first; when
///   one is present the cookie is not looked at, even if the bearer token
///   then fails to verify (no fallback: a request has one identity). Other
///   schemes (`Basic ...`) are ignored.
/// - Otherwise the `access_token` cookie, from any of the `Cookie` values
///   (`a=b; access_token=xyz; c=d`, optional surrounding double quotes).
///   Other cookies are never decoded, so a sibling site's cookie holding
///   bytes that are not UTF-8 changes nothing.
/// - Empty values count as absent. The same token sent twice is fine; two
///   different `access_token` cookies (say one planted for a parent domain)
///   or two different bearer tokens are refused rather than guessed
///   between, and so is a credential that is not UTF-8.
///
/// # Errors
///
/// [`AuthError::Missing`] when there is no credential at all, otherwise
/// [`AuthError::Invalid`] with a fixed reason.
pub fn token_from_headers<'a>(
    authorization: &[&'a [u8]],
    cookies: &[&'a [u8]],
) -> Result<&'a str, AuthError> {
    let bearers = authorization.iter().filter_map(|h| bearer_token(h));
    if let Some(token) = only_one(bearers, "conflicting bearer tokens")? {
        return Ok(token);
    }
    let values = cookies
        .iter()
        .flat_map(|header| header.split(|b| *b == b';'))
        .filter_map(|pair| {
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == b"access_token").then(|| {
                let value = pair[eq + 1..].trim_ascii();
                strip_quotes(value).trim_ascii()
            })
        })
        .filter(|value| !value.is_empty());
    only_one(values, "conflicting access_token cookies")?.ok_or(AuthError::Missing)
}

/// The value all of `values` agree on (as UTF-8), `None` when there are none.
pub(crate) fn only_one<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    conflict: &'static str,
) -> Result<Option<&'a str>, AuthError> {
    let mut picked: Option<&[u8]> = None;
    for value in values {
        match picked {
            Some(p) if p != value => return Err(AuthError::Invalid(conflict)),
            _ => picked = Some(value),
        }
    }
    picked
        .map(|v| std::str::from_utf8(v).map_err(|_| AuthError::Invalid("credential is not UTF-8")))
        .transpose()
}

/// `Bearer <token>` with any scheme case; `None` for other schemes or no token.
pub(crate) fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii();
    let split = header.iter().position(u8::is_ascii_whitespace)?;
    if !header[..split].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = header[split..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

pub(crate) fn strip_quotes(value: &[u8]) -> &[u8] {
    value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value)
}
