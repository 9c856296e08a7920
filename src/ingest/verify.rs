//! Checking who sent a request: an [`Unverified`] request becomes [`Verified`] only through
//! [`Unverified::verify`] (whole body: HMAC and token) or [`Unverified::verify_streaming`]
//! (token only, for bodies processed line by line). Only a [`Verified`] request can be turned
//! into an [`Event`], so no code path reaches the rules with an unchecked payload. Input that
//! comes from whoever runs the gateway — a payload file given to `cardwire render`, a payload
//! an admin sends from the playground, the `?explain` of an admin — is [`Verified::trusted`]:
//! the same typestate, said out loud at the call.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::SourceConfig;
use crate::error::ApiError;
use crate::event::Event;
use crate::event::SourceKind;

/// A request to a source whose credentials are not checked yet.
#[derive(Debug)]
pub struct Unverified<'a> {
    name: &'a str,
    source: &'a SourceConfig,
    headers: &'a HeaderMap,
}

/// A request whose credentials were checked.
#[derive(Debug)]
pub struct Verified<'a> {
    name: &'a str,
    source: &'a SourceConfig,
    headers: &'a HeaderMap,
}

impl<'a> Unverified<'a> {
    /// Wraps a request to the source `name`.
    pub fn new(name: &'a str, source: &'a SourceConfig, headers: &'a HeaderMap) -> Self {
        Self {
            name,
            source,
            headers,
        }
    }

    /// Whether verifying needs the whole body (an HMAC signature).
    pub fn needs_body(&self) -> bool {
        self.source.secret.is_some() && self.source.kind != SourceKind::Gitlab
    }

    /// Checks the token and, when the source has a secret, the signature over `body`.
    pub fn verify(self, body: &[u8]) -> Result<Verified<'a>, ApiError> {
        self.check_token()?;
        if let Some(secret) = &self.source.secret {
            match self.source.kind {
                SourceKind::Gitlab => self.check_gitlab_token(secret)?,
                _ => self.check_signature(secret, body)?,
            }
        }
        Ok(self.into_verified())
    }

    /// Checks a request whose body will be read in pieces: only header credentials can be
    /// checked, so a source that signs its body is refused here.
    pub fn verify_streaming(self) -> Result<Verified<'a>, ApiError> {
        if self.needs_body() {
            return Err(ApiError::bad_request(
                "signature_needs_body",
                "this source checks a signature over the whole body; the caller must buffer it",
            ));
        }
        self.verify(&[])
    }

    fn into_verified(self) -> Verified<'a> {
        Verified {
            name: self.name,
            source: self.source,
            headers: self.headers,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn check_token(&self) -> Result<(), ApiError> {
        let Some(token) = &self.source.token else {
            return Ok(());
        };
        let given = self
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("this source needs Authorization: Bearer <token>")
            })?;
        if bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("the bearer token is wrong"))
        }
    }

    fn check_gitlab_token(&self, secret: &str) -> Result<(), ApiError> {
        let given = self
            .header("x-gitlab-token")
            .ok_or_else(|| ApiError::unauthorized("the X-Gitlab-Token header is missing"))?;
        if bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("the X-Gitlab-Token header is wrong"))
        }
    }

    fn check_signature(&self, secret: &str, body: &[u8]) -> Result<(), ApiError> {
        let given = self
            .header("x-hub-signature-256")
            .ok_or_else(|| ApiError::unauthorized("the X-Hub-Signature-256 header is missing"))?;
        let hex_sig = given.strip_prefix("sha256=").ok_or_else(|| {
            ApiError::unauthorized("X-Hub-Signature-256 must look like sha256=<hex>")
        })?;
        let sig = hex::decode(hex_sig.trim())
            .map_err(|_| ApiError::unauthorized("X-Hub-Signature-256 is not hex"))?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(body);
        mac.verify_slice(&sig).map_err(|_| {
            ApiError::unauthorized(
                "X-Hub-Signature-256 does not match the body and the source's secret",
            )
        })
    }
}

/// `sha256=<hex>` over `body` with `secret`, as GitHub signs.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl<'a> Verified<'a> {
    /// Input the gateway's operator vouches for (a local payload file, an admin's request):
    /// no credentials to check. Never for a request from an upstream.
    pub fn trusted(name: &'a str, source: &'a SourceConfig, headers: &'a HeaderMap) -> Self {
        Self {
            name,
            source,
            headers,
        }
    }

    /// Builds the event from a payload of this request.
    pub fn event(&self, payload: Value) -> Result<Event, ApiError> {
        build_event(self.name, self.source, self.headers, payload)
    }
}

/// The event type as the request's headers give it, before the payload is read (ingest parses
/// only what the rules for that type read): none for a generic source whose type comes from a
/// payload field, or when the header is missing.
pub fn event_type_hint(source: &SourceConfig, headers: &HeaderMap) -> Option<String> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match source.kind {
        SourceKind::Github => header("X-GitHub-Event"),
        SourceKind::Gitlab => header("X-Gitlab-Event"),
        SourceKind::Alertmanager => Some("alert".to_string()),
        SourceKind::Generic => header(source.event_header.as_deref().unwrap_or("X-Event-Type")),
    }
}

/// Builds an event from a request's parts, by the rules of the source's kind (only through
/// [`Verified::event`]).
fn build_event(
    name: &str,
    source: &SourceConfig,
    headers: &HeaderMap,
    payload: Value,
) -> Result<Event, ApiError> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let required = |n: &str| {
        header(n).ok_or_else(|| {
            ApiError::bad_request("missing_event", format!("the {n} header is missing"))
        })
    };
    let hinted = event_type_hint(source, headers);
    let (event_type, delivery) = match source.kind {
        SourceKind::Github => (
            hinted.map_or_else(|| required("X-GitHub-Event"), Ok)?,
            header("X-GitHub-Delivery"),
        ),
        SourceKind::Gitlab => (
            hinted.map_or_else(|| required("X-Gitlab-Event"), Ok)?,
            header("Idempotency-Key").or_else(|| header("X-Gitlab-Event-UUID")),
        ),
        SourceKind::Alertmanager => (hinted.unwrap_or_else(|| "alert".to_string()), None),
        SourceKind::Generic => {
            let from_header = hinted;
            let from_field = source.event_field.as_deref().and_then(|f| {
                crate::rules::cond::FieldPath::parse(f)
                    .ok()?
                    .resolve(&payload)
                    .first()
                    .and_then(|v| v.as_str().map(str::to_string))
            });
            let event = from_header
                .or(from_field)
                .unwrap_or_else(|| "event".to_string());
            (event, header("Idempotency-Key"))
        }
    };
    if !payload.is_object() && source.kind != SourceKind::Generic {
        return Err(ApiError::bad_request(
            "invalid_payload",
            format!("a {} payload is a JSON object", source.kind.as_str()),
        ));
    }
    let headers = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    Ok(Event::new(
        name,
        source.kind,
        event_type,
        delivery.map(|d| format!("{name}:{d}")),
        headers,
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    fn source(kind: SourceKind, secret: Option<&str>, token: Option<&str>) -> SourceConfig {
        SourceConfig {
            kind,
            secret: secret.map(str::to_string),
            token: token.map(str::to_string),
            event_header: None,
            event_field: None,
            app: false,
            github_url: None,
            gitlab_url: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn github_signature() {
        let s = source(SourceKind::Github, Some("It's a Secret to Everybody"), None);
        // The example from GitHub's documentation on validating webhook deliveries.
        let body = b"Hello, World!";
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign("It's a Secret to Everybody", body), good);
        let h = headers(&[("x-hub-signature-256", good)]);
        assert!(Unverified::new("gh", &s, &h).verify(body).is_ok());
        assert_eq!(
            Unverified::new("gh", &s, &h)
                .verify(b"Hello, World?")
                .unwrap_err()
                .status,
            401
        );
        let h = headers(&[]);
        assert_eq!(
            Unverified::new("gh", &s, &h)
                .verify(body)
                .unwrap_err()
                .status,
            401
        );
        assert!(Unverified::new("gh", &s, &h).verify_streaming().is_err());
    }

    #[test]
    fn gitlab_and_bearer_tokens() {
        let s = source(SourceKind::Gitlab, Some("tok"), None);
        assert!(
            Unverified::new("gl", &s, &headers(&[("x-gitlab-token", "tok")]))
                .verify(b"{}")
                .is_ok()
        );
        assert!(
            Unverified::new("gl", &s, &headers(&[("x-gitlab-token", "tok2")]))
                .verify(b"{}")
                .is_err()
        );
        let s = source(SourceKind::Generic, None, Some("t"));
        assert!(
            Unverified::new("g", &s, &headers(&[("authorization", "Bearer t")]))
                .verify_streaming()
                .is_ok()
        );
        assert!(
            Unverified::new("g", &s, &headers(&[("authorization", "Bearer x")]))
                .verify_streaming()
                .is_err()
        );
        assert!(Unverified::new("g", &s, &headers(&[]))
            .verify_streaming()
            .is_err());
    }

    #[test]
    fn event_type_and_delivery_by_kind() {
        let s = source(SourceKind::Github, None, None);
        let h = headers(&[("x-github-event", "push"), ("x-github-delivery", "d-1")]);
        let e = build_event("gh", &s, &h, serde_json::json!({})).unwrap();
        assert_eq!(
            (e.event_type.as_str(), e.delivery_key.as_deref()),
            ("push", Some("gh:d-1"))
        );
        assert_eq!(
            build_event("gh", &s, &headers(&[]), serde_json::json!({}))
                .unwrap_err()
                .code,
            "missing_event"
        );
        let mut g = source(SourceKind::Generic, None, None);
        g.event_field = Some("meta.type".into());
        let e = build_event(
            "g",
            &g,
            &headers(&[]),
            serde_json::json!({"meta": {"type": "deploy"}}),
        )
        .unwrap();
        assert_eq!(e.event_type, "deploy");
        let e = build_event(
            "g",
            &g,
            &headers(&[("x-event-type", "h")]),
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(e.event_type, "h");
    }
}
