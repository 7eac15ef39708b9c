//! Short-lived TURN credentials for the bridge's welcome, in the TURN REST API scheme
//! (draft-uberti-behave-turn-rest-00 §2.2) that coturn checks with `use-auth-secret` +
//! `static-auth-secret`: the bridge and the TURN server share a secret, the bridge hands each
//! client `username = "<expiry-unix>:<peer id>"` and `credential = base64(HMAC-SHA1(secret,
//! username))`, and the TURN server recomputes the credential and refuses it after the expiry.
//! So a web page never holds the long-term secret, and a leaked credential dies within `ttl`.
//!
//! Native only, feature `bridge`.

use super::protocol::{PeerId, TurnCredentials};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default [`TurnConfig::ttl`]: 24 h, the lifetime the TURN REST API draft suggests (§2.2).
/// A TURN allocation must be made before the expiry; coturn then also refuses refreshes, so a
/// relayed connection cannot outlive its credentials for long (see `docs/turn.md`).
pub const DEFAULT_TURN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The TURN server(s) the bridge hands credentials for.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs given to clients, e.g. `turn:198.18.0.1:3478`.
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (coturn `static-auth-secret`).
    pub secret: String,
    /// How long each handed-out credential stays valid (default [`DEFAULT_TURN_TTL`]).
    pub ttl: Duration,
}

impl std::fmt::Debug for TurnConfig {
    /// Leaves the secret out, so logs never hold it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl TurnConfig {
    /// Credentials for `peer`, valid `ttl` from now (the system clock, which the TURN server
    /// must roughly share).
    pub fn credentials_for(&self, peer: &PeerId) -> TurnCredentials {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.credentials_at(peer, now)
    }

    /// Credentials for `peer` as issued at `now_unix` (seconds since the Unix epoch).
    pub fn credentials_at(&self, peer: &PeerId, now_unix: u64) -> TurnCredentials {
        let ttl = self.ttl.as_secs();
        let username = format!("{}:{}", now_unix.saturating_add(ttl), peer);
        TurnCredentials {
            urls: self.urls.clone(),
            credential: rest_api_credential(&self.secret, &username),
            username,
            ttl,
        }
    }
}

/// `base64(HMAC-SHA1(secret, username))`, the credential coturn expects for `username` under
/// `use-auth-secret`.
pub fn rest_api_credential(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_matches_an_independent_hmac_sha1() {
        // python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
        //   b"north", b"1767225600:c", hashlib.sha1).digest()).decode())'
        assert_eq!(
            rest_api_credential("north", "1767225600:c"),
            "oLrT4srfTsJXCmrr61Awnl3PlDg="
        );
    }

    #[test]
    fn username_is_expiry_then_peer_id() {
        let config = TurnConfig {
            urls: vec!["turn:198.18.0.1:3478".into()],
            secret: "north".into(),
            ttl: Duration::from_secs(86_400),
        };
        let c = config.credentials_at(&PeerId::from("c"), 1_767_139_200);
        assert_eq!(c.username, "1767225600:c");
        assert_eq!(c.credential, "oLrT4srfTsJXCmrr61Awnl3PlDg=");
        assert_eq!(c.ttl, 86_400);
        assert_eq!(c.urls, ["turn:198.18.0.1:3478"]);
        assert!(
            !format!("{config:?}").contains("north"),
            "secret kept out of Debug"
        );
    }
}
