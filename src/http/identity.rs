//! Identity from the user store (`identity_key_prefix`).
//!
//! The Python service's tokens carry only `sub` (the username) and `exp`;
//! on every connect it looks the user up and takes the user id, role and
//! `is_active` from its user store. With `identity_key_prefix` set the
//! gateway does the same from the hash `{prefix}{sub}` that the API keeps
//! (fields `user_id`, `role`, `is_active`): a missing or inactive user is
//! refused like a bad token (401 `Invalid credentials`), and a stream
//! re-reads the hash to cut a user deactivated while streaming.

use crate::http::auth::{AuthError, Identity, Role};

/// The `HGETALL` that reads the user record of the token's subject.
pub fn lookup_command(prefix: &str, username: &str) -> Vec<Vec<u8>> {
    vec![
        b"HGETALL".to_vec(),
        format!("{prefix}{username}").into_bytes(),
    ]
}

/// The caller as the user store knows them: `token` is the verified token's
/// identity (its user id is the username the record was looked up by; its
/// expiry stays), `pairs` the `HGETALL` reply. The user id and role come
/// from the record, never from claims. Refusals carry a fixed reason for the
/// log line and become 401 `Invalid credentials`.
pub fn from_store(token: &Identity, pairs: &[(String, String)]) -> Result<Identity, AuthError> {
    if pairs.is_empty() {
        return Err(AuthError::Invalid("unknown user"));
    }
    let field = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    };
    let active = match field("is_active").map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1") => true,
        Some("false" | "0") => false,
        // Fail closed on a value the API would not write.
        Some(_) => return Err(AuthError::Invalid("user record is_active unreadable")),
    };
    if !active {
        return Err(AuthError::Invalid("user inactive"));
    }
    let user_id = match field("user_id") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => return Err(AuthError::Invalid("user record has no user_id")),
    };
    // The store's roles are `user`, `admin` and `moderator`; only `admin`
    // grants more than a user has. `service` is a token role, never a
    // store one, so the store cannot grant publishing.
    let role = match field("role") {
        Some("admin") => Role::Admin,
        _ => Role::User,
    };
    Ok(Identity {
        user_id,
        role,
        expires_at: token.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Identity {
        Identity {
            user_id: "alice".into(),
            role: Role::Service,
            expires_at: 1_900_000_000,
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn active_user_gets_the_stores_id_and_role() {
        let who = from_store(
            &token(),
            &pairs(&[("user_id", "u-42"), ("role", "user"), ("is_active", "true")]),
        )
        .unwrap();
        assert_eq!(
            who,
            Identity {
                user_id: "u-42".into(),
                role: Role::User,
                expires_at: 1_900_000_000
            }
        );
        let admin = from_store(&token(), &pairs(&[("user_id", "u-1"), ("role", "admin")])).unwrap();
        assert_eq!(admin.role, Role::Admin);
    }

    #[test]
    fn absent_is_active_means_active() {
        assert!(from_store(&token(), &pairs(&[("user_id", "u")])).is_ok());
        for v in ["1", "TRUE", " true "] {
            assert!(
                from_store(&token(), &pairs(&[("user_id", "u"), ("is_active", v)])).is_ok(),
                "{v}"
            );
        }
    }

    #[test]
    fn inactive_unknown_or_broken_records_are_refused() {
        for list in [
            &[][..],
            &[("user_id", "u"), ("is_active", "false")],
            &[("user_id", "u"), ("is_active", "0")],
            &[("user_id", "u"), ("is_active", "False")],
            &[("user_id", "u"), ("is_active", "no")],
            &[("user_id", "u"), ("is_active", "")],
            &[("role", "admin")],
            &[("user_id", " "), ("role", "admin")],
        ] {
            let got = from_store(&token(), &pairs(list));
            assert!(
                matches!(got, Err(AuthError::Invalid(_))),
                "{list:?}: {got:?}"
            );
        }
    }

    #[test]
    fn roles_other_than_admin_are_users_and_claims_never_count() {
        for role in ["user", "moderator", "service", "Admin", ""] {
            let who = from_store(&token(), &pairs(&[("user_id", "u"), ("role", role)])).unwrap();
            assert_eq!(who.role, Role::User, "{role}");
        }
        // The token said Service; the store gives no role: a user.
        assert_eq!(
            from_store(&token(), &pairs(&[("user_id", "u")]))
                .unwrap()
                .role,
            Role::User
        );
    }

    #[test]
    fn lookup_reads_the_prefixed_hash() {
        assert_eq!(
            lookup_command("user:", "alice"),
            vec![b"HGETALL".to_vec(), b"user:alice".to_vec()]
        );
    }
}
