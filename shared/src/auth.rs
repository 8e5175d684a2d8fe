//! Who is calling: HS256 JWT verification, the caller's [`Identity`] and the access rule every
//! service applies (a user sees and cancels their own imports; a tenant admin, the tenant's).
//!
//! With `HEXFLOW_AUTH_SECRET` set, every HTTP call carries `Authorization: Bearer <jwt>` and every
//! socket `auth: {token}`. Without it the services run open: every caller is the anonymous user
//! of tenant `default`, which is fine for `hexflow dev` and nothing else.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Secret;

/// Tenant of callers whose token names none, and of everyone in open mode.
pub const DEFAULT_TENANT: &str = "default";
/// The role claim that makes a user their tenant's admin.
pub const ADMIN_ROLE: &str = "admin";

/// Authentication settings.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AuthConfig {
    /// HS256 secret that signs the users' JWTs; unset means open mode (no authentication).
    #[arg(id = "auth_secret", long = "auth-secret", env = "HEXFLOW_AUTH_SECRET", value_name = "HEXFLOW_AUTH_SECRET",
          value_parser = parse_secret)]
    pub secret: Option<Secret>,
}

/// Refuses an empty secret: set but empty is a mistake, not a request for open mode.
fn parse_secret(raw: &str) -> Result<Secret, String> {
    if raw.is_empty() {
        Err("the secret is empty; unset the variable for open mode".into())
    } else {
        Ok(Secret(raw.into()))
    }
}

/// The caller: who owns what they upload, and which tenant's imports they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id (`sub`).
    pub user: String,
    /// Tenant the user belongs to.
    pub tenant: String,
    /// Tenant admins see and cancel every import of their tenant.
    pub admin: bool,
}

impl Identity {
    /// The caller in open mode (no authentication configured).
    pub fn anonymous() -> Self {
        Identity { user: "anonymous".into(), tenant: DEFAULT_TENANT.into(), admin: false }
    }

    /// True when the caller may see and cancel an import of `owner` in `tenant`.
    pub fn may_access(&self, owner: &str, tenant: &str) -> bool {
        tenant == self.tenant && (owner == self.user || self.admin)
    }
}

/// The claims hexflow reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's tenant (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `admin` for tenant admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Why a caller was refused. The message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token where one is required.
    #[error("authentication required: send a JWT (HTTP: Authorization: Bearer <token>; Socket.IO: auth: {{token}})")]
    Missing,
    /// Not three base64url parts, or not JSON inside.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Signed with something other than HS256.
    #[error("unsupported token algorithm {0:?}; expected HS256")]
    Algorithm(String),
    /// The signature does not match the configured secret.
    #[error("invalid token signature")]
    Signature,
    /// `exp` has passed or `nbf` has not come yet.
    #[error("token expired or not yet valid")]
    Expired,
}

/// Leeway for clock skew between the token issuer and us, in seconds.
const LEEWAY_SECS: i64 = 30;

/// Turns credentials into an [`Identity`]: verifies tokens, or lets everyone in when open.
#[derive(Clone, Debug)]
pub struct Authenticator {
    secret: Option<Secret>,
}

impl Authenticator {
    /// From the configuration: verifying with its secret, or open without one.
    pub fn new(config: &AuthConfig) -> Self {
        Authenticator { secret: config.secret.clone() }
    }

    /// Open mode: everyone is [`Identity::anonymous`].
    pub fn open() -> Self {
        Authenticator { secret: None }
    }

    /// True when no secret is configured.
    pub fn is_open(&self) -> bool {
        self.secret.is_none()
    }

    /// The caller behind `token`. In open mode the token is ignored.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let Some(secret) = &self.secret else { return Ok(Identity::anonymous()) };
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let claims = verify(secret.expose(), token, crate::events::now_ms() / 1000)?;
        let admin = claims.role.as_deref() == Some(ADMIN_ROLE);
        Ok(Identity { user: claims.sub, tenant: claims.tenant.unwrap_or_else(|| DEFAULT_TENANT.into()), admin })
    }

    /// The caller behind an `Authorization` header value (`Bearer <token>`).
    pub fn authenticate_header(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let token = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
        if header.is_some() && token.is_none() && !self.is_open() {
            return Err(AuthError::Malformed("the Authorization header must read `Bearer <token>`"));
        }
        self.authenticate(token)
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Checks an HS256 token's signature and time window; `now` is seconds since the epoch.
pub fn verify(secret: &str, token: &str, now: i64) -> Result<Claims, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("expected three dot-separated parts"));
    };
    let signed = &token[..header.len() + 1 + payload.len()];
    let header: Header = decode_json(header)?;
    if header.alg != "HS256" {
        return Err(AuthError::Algorithm(header.alg));
    }
    let signature =
        URL_SAFE_NO_PAD.decode(signature).map_err(|_| AuthError::Malformed("signature is not base64url"))?;
    // `verify_slice` compares in constant time, so the signature cannot be guessed byte by byte.
    mac(secret, signed.as_bytes()).verify_slice(&signature).map_err(|_| AuthError::Signature)?;
    let claims: Claims = decode_json(payload)?;
    if claims.exp.is_some_and(|exp| now > exp + LEEWAY_SECS) || claims.nbf.is_some_and(|nbf| now + LEEWAY_SECS < nbf) {
        return Err(AuthError::Expired);
    }
    Ok(claims)
}

/// Signs `claims` with HS256 (for tests, tools and the dev page; services only verify).
pub fn issue(secret: &str, claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims always serialise"));
    let signed = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, signed.as_bytes()).finalize().into_bytes());
    format!("{signed}.{signature}")
}

fn mac(secret: &str, data: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| AuthError::Malformed("a part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed("a part is not the expected JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Claims {
        Claims { sub: sub.into(), tenant: Some("acme".into()), role: None, exp: None, nbf: None }
    }

    fn strict() -> Authenticator {
        Authenticator::new(&AuthConfig { secret: Some(Secret("s3cret".into())) })
    }

    #[test]
    fn a_token_signed_with_the_secret_gives_its_identity() {
        let token = issue("s3cret", &Claims { role: Some("admin".into()), ..claims("ann") });
        let who = strict().authenticate(Some(&token)).unwrap();
        assert_eq!(who, Identity { user: "ann".into(), tenant: "acme".into(), admin: true });
        let bearer = strict().authenticate_header(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(bearer.user, "ann");
    }

    #[test]
    fn tampered_foreign_expired_and_missing_tokens_are_refused() {
        let token = issue("s3cret", &claims("ann"));
        let forged = issue("other", &claims("ann"));
        let (head, _) = token.rsplit_once('.').unwrap();
        let (_, forged_sig) = forged.rsplit_once('.').unwrap();
        assert_eq!(strict().authenticate(Some(&format!("{head}.{forged_sig}"))), Err(AuthError::Signature));
        let expired = issue("s3cret", &Claims { exp: Some(1), ..claims("ann") });
        assert_eq!(strict().authenticate(Some(&expired)), Err(AuthError::Expired));
        assert_eq!(strict().authenticate(None), Err(AuthError::Missing));
        assert!(matches!(strict().authenticate(Some("a.b")), Err(AuthError::Malformed(_))));
        assert!(matches!(strict().authenticate_header(Some("Basic abc")), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn open_mode_makes_everyone_anonymous_and_access_follows_owner_and_tenant() {
        let who = Authenticator::open().authenticate(None).unwrap();
        assert_eq!(who, Identity::anonymous());
        assert!(who.may_access("anonymous", "default"));
        assert!(!who.may_access("bob", "default"));
        let admin = Identity { user: "ann".into(), tenant: "acme".into(), admin: true };
        assert!(admin.may_access("bob", "acme"));
        assert!(!admin.may_access("bob", "other"));
        assert!(parse_secret("").is_err());
    }
}
