//! Who is calling: HS256 JWT verification, the caller's [`Identity`] and the access rule every
//! service applies (a user sees and cancels their own imports; a tenant admin, the tenant's).
//!
//! With `HEXFLOW_AUTH_SECRET` set, every HTTP call carries `Authorization: Bearer <jwt>` and every
//! socket `auth: {token}`. Without it the services run open: every caller is the anonymous user
//! of tenant `default`, which is fine for `hexflow dev` and nothing else.
//!
//! A token must carry `exp`: a token that never expires cannot be taken back short of changing
//! the secret for everyone. `HEXFLOW_AUTH_ISSUER` and `HEXFLOW_AUTH_AUDIENCE`, when set, pin `iss`
//! and `aud`, so that a token the same identity provider signed for another application is
//! refused here.
//!
//! The verification is written out (HS256 only, a few dozen lines) rather than taken from a JWT
//! crate: with one algorithm accepted there is no `alg` confusion to guard against, and `hmac`'s
//! `verify_slice` compares the signature in constant time.

use std::ffi::OsStr;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Secret;

/// Tenant of callers whose token names none, and of everyone in open mode.
pub const DEFAULT_TENANT: &str = "default";
/// The role claim that makes a user their tenant's admin.
pub const ADMIN_ROLE: &str = "admin";
/// The shortest secret accepted: HS256 keys shorter than the hash (32 bytes) weaken it (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Authentication settings.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AuthConfig {
    /// HS256 secret that signs the users' JWTs, at least 32 bytes (`openssl rand -base64 48`);
    /// unset means open mode (no authentication).
    #[arg(id = "auth_secret", long = "auth-secret", env = "HEXFLOW_AUTH_SECRET", value_name = "HEXFLOW_AUTH_SECRET",
          value_parser = SecretParser, hide_env_values = true)]
    pub secret: Option<Secret>,
    /// The `iss` every token must carry; unset accepts any issuer.
    #[arg(id = "auth_issuer", long = "auth-issuer", env = "HEXFLOW_AUTH_ISSUER", value_name = "HEXFLOW_AUTH_ISSUER",
          value_parser = parse_name, requires = "auth_secret")]
    pub issuer: Option<String>,
    /// The audience every token's `aud` must name (a string, or an array containing it); unset
    /// accepts any audience.
    #[arg(id = "auth_audience", long = "auth-audience", env = "HEXFLOW_AUTH_AUDIENCE",
          value_name = "HEXFLOW_AUTH_AUDIENCE", value_parser = parse_name, requires = "auth_secret")]
    pub audience: Option<String>,
}

/// Parses the secret. Refuses an empty one (set but empty is a mistake, not a request for open
/// mode) and a short one. Its errors never repeat the value, unlike clap's own, which quote it.
#[derive(Clone, Copy, Debug)]
struct SecretParser;

impl clap::builder::TypedValueParser for SecretParser {
    type Value = Secret;

    fn parse_ref(&self, cmd: &clap::Command, _: Option<&clap::Arg>, raw: &OsStr) -> Result<Secret, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("HEXFLOW_AUTH_SECRET: {why}"))
                .format(&mut cmd.clone())
        };
        let raw = raw.to_str().ok_or_else(|| refuse("the secret is not valid UTF-8".into()))?;
        check_secret(raw).map_err(refuse)
    }
}

fn check_secret(raw: &str) -> Result<Secret, String> {
    match raw.len() {
        0 => Err("the secret is empty; unset the variable for open mode".into()),
        n if n < MIN_SECRET_BYTES => Err(format!(
            "the secret is {n} bytes long; HS256 needs at least {MIN_SECRET_BYTES} bytes \
             (generate one with `openssl rand -base64 48`)"
        )),
        _ => Ok(Secret(raw.into())),
    }
}

/// Refuses an empty issuer or audience, which no token could match.
fn parse_name(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() { Err("empty; unset the variable to accept any".into()) } else { Ok(raw.into()) }
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's tenant (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `admin` for tenant admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Expiry, seconds since the epoch; required by [`Authenticator`] (optional here so that
    /// tests can sign tokens without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, seconds since the epoch (informative; not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Issuer; must equal `HEXFLOW_AUTH_ISSUER` when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience; must name `HEXFLOW_AUTH_AUDIENCE` when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// The `aud` claim: one audience or several (RFC 7519 §4.1.3 allows both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "hexflow"`.
    One(String),
    /// `"aud": ["hexflow", "other"]`.
    Many(Vec<String>),
}

impl Audience {
    /// True when `audience` is (among) the token's audience.
    pub fn names(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
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
    /// No `exp`: tokens that never expire are refused.
    #[error("token has no `exp` (expiry) claim; hexflow accepts only tokens that expire")]
    NoExpiry,
    /// `exp` has passed or `nbf` has not come yet.
    #[error("token expired or not yet valid")]
    Expired,
    /// `iss` missing or not the configured issuer.
    #[error("token issuer {} is not the expected {expected:?}", quoted(.found))]
    Issuer {
        /// `HEXFLOW_AUTH_ISSUER`.
        expected: String,
        /// The token's `iss`.
        found: Option<String>,
    },
    /// `aud` missing or not naming the configured audience.
    #[error("token audience {} does not include the expected {expected:?}", .found.as_deref().unwrap_or("(none)"))]
    Audience {
        /// `HEXFLOW_AUTH_AUDIENCE`.
        expected: String,
        /// The token's `aud`, as JSON (a quoted string or an array).
        found: Option<String>,
    },
}

fn quoted(claim: &Option<String>) -> String {
    claim.as_ref().map_or_else(|| "(none)".into(), |c| format!("{c:?}"))
}

/// Leeway for clock skew between the token issuer and us, in seconds.
const LEEWAY_SECS: i64 = 30;

/// Turns credentials into an [`Identity`]: verifies tokens, or lets everyone in when open.
#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    /// `None` is open mode.
    secret: Option<Secret>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Authenticator {
    /// From the configuration: verifying with its secret, or open without one.
    pub fn new(config: &AuthConfig) -> Self {
        Authenticator {
            secret: config.secret.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }
    }

    /// Open mode: everyone is [`Identity::anonymous`].
    pub fn open() -> Self {
        Authenticator::default()
    }

    /// True when no secret is configured.
    pub fn is_open(&self) -> bool {
        self.secret.is_none()
    }

    /// The caller behind `token`. In open mode the token is ignored.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        self.authenticate_until(token).map(|(identity, _)| identity)
    }

    /// The caller behind `token`, and until when (seconds since the epoch, the leeway included)
    /// the token stays valid; `None` in open mode. Long-lived connections (sockets) check the
    /// credential again at that time, since nothing re-sends it.
    pub fn authenticate_until(&self, token: Option<&str>) -> Result<(Identity, Option<i64>), AuthError> {
        let Some(secret) = &self.secret else { return Ok((Identity::anonymous(), None)) };
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let claims = verify_signature(secret.expose(), token)?;
        self.check(&claims, crate::events::now_ms() / 1000)?;
        let admin = claims.role.as_deref() == Some(ADMIN_ROLE);
        let valid_until = claims.exp.map(|exp| exp.saturating_add(LEEWAY_SECS));
        let identity =
            Identity { user: claims.sub, tenant: claims.tenant.unwrap_or_else(|| DEFAULT_TENANT.into()), admin };
        Ok((identity, valid_until))
    }

    /// The caller behind an `Authorization` header value (`Bearer <token>`).
    pub fn authenticate_header(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let token = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
        if header.is_some() && token.is_none() && !self.is_open() {
            return Err(AuthError::Malformed("the Authorization header must read `Bearer <token>`"));
        }
        self.authenticate(token)
    }

    /// Checks the claims of a genuine token: `exp` present, the time window around `now`
    /// (seconds since the epoch), then issuer and audience when configured.
    fn check(&self, claims: &Claims, now: i64) -> Result<(), AuthError> {
        let exp = claims.exp.ok_or(AuthError::NoExpiry)?;
        if now > exp + LEEWAY_SECS || claims.nbf.is_some_and(|nbf| now + LEEWAY_SECS < nbf) {
            return Err(AuthError::Expired);
        }
        if let Some(expected) = &self.issuer
            && claims.iss.as_ref() != Some(expected)
        {
            return Err(AuthError::Issuer { expected: expected.clone(), found: claims.iss.clone() });
        }
        if let Some(expected) = &self.audience
            && !claims.aud.as_ref().is_some_and(|aud| aud.names(expected))
        {
            let found = claims.aud.as_ref().map(|aud| serde_json::to_string(aud).expect("strings always serialise"));
            return Err(AuthError::Audience { expected: expected.clone(), found });
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Checks an HS256 token's signature and returns its claims, not yet checked.
fn verify_signature(secret: &str, token: &str) -> Result<Claims, AuthError> {
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
    decode_json(payload)
}

/// Signs `claims` with HS256 (for `hexflow token`, tests and tools; services only verify).
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
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    fn claims(sub: &str) -> Claims {
        Claims { sub: sub.into(), tenant: Some("acme".into()), exp: Some(NOW + 3600), ..Claims::default() }
    }

    fn strict() -> Authenticator {
        Authenticator::new(&AuthConfig { secret: Some(Secret(SECRET.into())), ..AuthConfig::default() })
    }

    fn pinned() -> Authenticator {
        Authenticator { issuer: Some("https://id.example".into()), audience: Some("hexflow".into()), ..strict() }
    }

    /// What `pinned()` says of `claims`, signature and all, at [`NOW`].
    fn judge(auth: &Authenticator, claims: &Claims) -> Result<Claims, AuthError> {
        let claims = verify_signature(SECRET, &issue(SECRET, claims))?;
        auth.check(&claims, NOW).map(|()| claims)
    }

    /// `AuthConfig` from command-line flags alone (the variables of the test's environment unheard).
    fn parse(args: &[&str]) -> Result<AuthConfig, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            auth: AuthConfig,
        }
        let command = ["auth_secret", "auth_issuer", "auth_audience"]
            .into_iter()
            .fold(Cli::command(), |command, id| command.mut_arg(id, |arg| arg.env(None)));
        let matches = command.try_get_matches_from(std::iter::once("hexflow").chain(args.iter().copied()))?;
        Ok(Cli::from_arg_matches(&matches)?.auth)
    }

    #[test]
    fn a_token_signed_with_the_secret_gives_its_identity() {
        let token = issue(SECRET, &Claims { role: Some("admin".into()), exp: Some(i64::MAX / 2), ..claims("ann") });
        let who = strict().authenticate(Some(&token)).unwrap();
        assert_eq!(who, Identity { user: "ann".into(), tenant: "acme".into(), admin: true });
        let bearer = strict().authenticate_header(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(bearer.user, "ann");
    }

    #[test]
    fn a_token_says_until_when_it_is_valid_and_open_mode_has_no_end() {
        let exp = crate::events::now_ms() / 1000 + 600;
        let token = issue(SECRET, &Claims { exp: Some(exp), ..claims("ann") });
        let (identity, until) = strict().authenticate_until(Some(&token)).unwrap();
        assert_eq!(identity.user, "ann");
        assert_eq!(until, Some(exp + LEEWAY_SECS));
        assert_eq!(Authenticator::open().authenticate_until(None).unwrap().1, None);
    }

    #[test]
    fn tampered_foreign_expired_and_missing_tokens_are_refused() {
        let token = issue(SECRET, &claims("ann"));
        let forged = issue("another-secret-of-thirty-two-bytes", &claims("ann"));
        let (head, _) = token.rsplit_once('.').unwrap();
        let (_, forged_sig) = forged.rsplit_once('.').unwrap();
        assert_eq!(strict().authenticate(Some(&format!("{head}.{forged_sig}"))), Err(AuthError::Signature));
        let expired = issue(SECRET, &Claims { exp: Some(1), ..claims("ann") });
        assert_eq!(strict().authenticate(Some(&expired)), Err(AuthError::Expired));
        assert_eq!(judge(&strict(), &Claims { nbf: Some(NOW + 600), ..claims("ann") }), Err(AuthError::Expired));
        assert_eq!(strict().authenticate(None), Err(AuthError::Missing));
        assert!(matches!(strict().authenticate(Some("a.b")), Err(AuthError::Malformed(_))));
        assert!(matches!(strict().authenticate_header(Some("Basic abc")), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn a_token_without_exp_is_refused_with_a_message_naming_exp() {
        let token = issue(SECRET, &Claims { exp: None, ..claims("ann") });

        let refused = strict().authenticate(Some(&token)).unwrap_err();

        assert_eq!(refused, AuthError::NoExpiry);
        assert!(refused.to_string().contains("`exp`"), "{refused}");
    }

    #[test]
    fn a_token_within_leeway_of_its_window_is_accepted() {
        assert!(judge(&strict(), &Claims { exp: Some(NOW - LEEWAY_SECS), ..claims("ann") }).is_ok());
        assert!(judge(&strict(), &Claims { nbf: Some(NOW + LEEWAY_SECS), ..claims("ann") }).is_ok());
    }

    fn pinned_claims() -> Claims {
        Claims { iss: Some("https://id.example".into()), aud: Some(Audience::One("hexflow".into())), ..claims("ann") }
    }

    #[test]
    fn with_an_issuer_configured_a_token_of_another_issuer_or_of_none_is_refused() {
        let other = judge(&pinned(), &Claims { iss: Some("https://evil.example".into()), ..pinned_claims() });
        let none = judge(&pinned(), &Claims { iss: None, ..pinned_claims() });

        assert!(judge(&pinned(), &pinned_claims()).is_ok());
        let other = other.unwrap_err().to_string();
        assert!(other.contains(r#"issuer "https://evil.example" is not the expected "https://id.example""#), "{other}");
        let none = none.unwrap_err().to_string();
        assert!(none.contains("issuer (none) is not"), "{none}");
        assert!(judge(&strict(), &Claims { iss: Some("anyone".into()), ..claims("ann") }).is_ok(), "unpinned");
    }

    #[test]
    fn with_an_audience_configured_aud_must_be_it_or_an_array_containing_it() {
        let with = |aud: Option<Audience>| judge(&pinned(), &Claims { aud, ..pinned_claims() });
        let many = |names: &[&str]| Some(Audience::Many(names.iter().map(|n| n.to_string()).collect()));

        assert!(with(Some(Audience::One("hexflow".into()))).is_ok());
        assert!(with(many(&["billing", "hexflow"])).is_ok());
        let other = with(Some(Audience::One("billing".into()))).unwrap_err().to_string();
        assert!(other.contains(r#"audience "billing" does not include the expected "hexflow""#), "{other}");
        assert!(matches!(with(many(&["billing"])), Err(AuthError::Audience { .. })));
        assert!(with(None).unwrap_err().to_string().contains("audience (none) does not include"));
    }

    #[test]
    fn aud_is_read_as_a_string_or_an_array() {
        let one: Claims = serde_json::from_str(r#"{"sub":"ann","aud":"hexflow"}"#).unwrap();
        let many: Claims = serde_json::from_str(r#"{"sub":"ann","aud":["a","hexflow"]}"#).unwrap();

        assert_eq!(one.aud, Some(Audience::One("hexflow".into())));
        assert!(many.aud.unwrap().names("hexflow"));
    }

    #[test]
    fn a_short_secret_is_refused_at_start_up_saying_how_long_it_is_without_repeating_it() {
        let refused = parse(&["--auth-secret", "tiny-secret"]).unwrap_err().to_string();

        assert!(refused.contains("HEXFLOW_AUTH_SECRET"), "{refused}");
        assert!(refused.contains("11 bytes long") && refused.contains("at least 32 bytes"), "{refused}");
        assert!(refused.contains("openssl rand -base64 48"), "{refused}");
        assert!(!refused.contains("tiny-secret"), "the secret must not be printed: {refused}");
        assert!(parse(&["--auth-secret", ""]).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn a_secret_of_32_bytes_with_issuer_and_audience_is_accepted() {
        let config =
            parse(&["--auth-secret", SECRET, "--auth-issuer", "https://id.example", "--auth-audience", "hexflow"])
                .unwrap();

        assert_eq!(config.secret.unwrap().expose(), SECRET);
        assert_eq!(config.issuer.as_deref(), Some("https://id.example"));
        assert_eq!(config.audience.as_deref(), Some("hexflow"));
        assert!(parse(&[]).unwrap().secret.is_none(), "no secret is open mode");
    }

    #[test]
    fn an_issuer_or_audience_without_a_secret_is_refused() {
        let refused = parse(&["--auth-issuer", "https://id.example"]).unwrap_err();

        assert_eq!(refused.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(parse(&["--auth-audience", "hexflow"]).is_err());
        assert!(parse(&["--auth-secret", SECRET, "--auth-audience", " "]).is_err(), "a blank audience");
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
    }
}
