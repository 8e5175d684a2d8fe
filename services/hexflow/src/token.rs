//! `hexflow token --sub USER`: signs a token the gateways accept, with the same `HEXFLOW_AUTH_*`
//! settings they verify with. For operators and scripts where no identity provider issues
//! tokens; the token goes to stdout alone, so `TOKEN=$(hexflow token --sub ann)` works.

use std::time::Duration;

use anyhow::Context;
use shared::auth::{ADMIN_ROLE, Audience, AuthConfig, Claims, issue};

/// Arguments of `hexflow token`.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long, value_parser = parse_sub)]
    pub sub: String,
    /// The user's tenant (default: the `default` tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Make the user their tenant's admin (sees and cancels every import of the tenant).
    #[arg(long)]
    pub admin: bool,
    /// How long the token is valid: 90s, 15m, 24h or 7d.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// The secret, issuer and audience the gateways verify with.
    #[command(flatten)]
    pub auth: AuthConfig,
}

/// The signed token for `args`, issued at `now` (seconds since the epoch).
pub fn sign(args: &TokenArgs, now: i64) -> anyhow::Result<String> {
    let secret = args.auth.secret.as_ref().context(
        "no secret to sign with: set HEXFLOW_AUTH_SECRET (or --auth-secret) to the secret the gateways verify with",
    )?;
    Ok(issue(secret.expose(), &claims(args, now)?))
}

/// The claims for `args` at `now`: the issuer and audience the gateways expect, `iat` and `exp`.
fn claims(args: &TokenArgs, now: i64) -> anyhow::Result<Claims> {
    let exp =
        i64::try_from(args.ttl.as_secs()).ok().and_then(|ttl| now.checked_add(ttl)).context("--ttl is too long")?;
    Ok(Claims {
        sub: args.sub.clone(),
        tenant: args.tenant.clone(),
        role: args.admin.then(|| ADMIN_ROLE.to_owned()),
        iat: Some(now),
        exp: Some(exp),
        iss: args.auth.issuer.clone(),
        aud: args.auth.audience.clone().map(Audience::One),
        nbf: None,
    })
}

fn parse_sub(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() { Err("the user id is empty".into()) } else { Ok(raw.into()) }
}

/// `90s`, `15m`, `24h`, `7d`: a positive whole number and one unit.
fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let refuse =
        || format!("expected a positive number and a unit (s, m, h or d), like 90s, 15m, 24h or 7d; got {raw:?}");
    let unit = match raw.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err(refuse()),
    };
    let digits = &raw[..raw.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)) {
        Some(0) => Err(refuse()),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(format!("{raw:?} is too long")),
    }
}

#[cfg(test)]
mod tests {
    use shared::{
        auth::{AuthError, Authenticator, Identity},
        config::Secret,
    };

    use super::*;

    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes";

    fn args(auth: AuthConfig) -> TokenArgs {
        TokenArgs { sub: "ann".into(), tenant: Some("acme".into()), admin: true, ttl: Duration::from_secs(60), auth }
    }

    fn pinned() -> AuthConfig {
        AuthConfig {
            secret: Some(Secret(SECRET.into())),
            issuer: Some("https://id.example".into()),
            audience: Some("hexflow".into()),
        }
    }

    #[test]
    fn ttls_are_a_number_and_a_unit() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "h", "24", "1.5h", "-1h", "+1h", "0s", "24 h", "1w", "24H", "1h30m"] {
            let refused = parse_ttl(bad).unwrap_err();
            assert!(refused.contains("like 90s, 15m, 24h or 7d"), "{bad:?}: {refused}");
        }
        assert!(parse_ttl("99999999999999999999d").is_err());
    }

    #[test]
    fn a_signed_token_carries_iat_exp_issuer_and_audience_and_the_gateways_accept_it() {
        let now = shared::events::now_ms() / 1000;

        let token = sign(&args(pinned()), now).unwrap();

        let who = Authenticator::new(&pinned()).authenticate(Some(&token)).unwrap();
        assert_eq!(who, Identity { user: "ann".into(), tenant: "acme".into(), admin: true });
        let claims = claims(&args(pinned()), now).unwrap();
        assert_eq!((claims.iat, claims.exp), (Some(now), Some(now + 60)));
        assert_eq!(claims.iss.as_deref(), Some("https://id.example"));
        assert_eq!(claims.aud, Some(Audience::One("hexflow".into())));
    }

    #[test]
    fn a_token_past_its_ttl_is_refused() {
        let an_hour_ago = shared::events::now_ms() / 1000 - 3600;

        let token = sign(&args(pinned()), an_hour_ago).unwrap();

        assert_eq!(Authenticator::new(&pinned()).authenticate(Some(&token)), Err(AuthError::Expired));
    }

    #[test]
    fn without_a_secret_nothing_is_signed() {
        let refused = sign(&args(AuthConfig::default()), 0).unwrap_err().to_string();

        assert!(refused.contains("HEXFLOW_AUTH_SECRET"), "{refused}");
    }
}
