//! The admin API's gate: who may call it, and the body reader its handlers share.
//!
//! In: a request under `/api` (or a page's form). Out: [`Admin`], an extractor that lets a
//! handler run only for a request with `Authorization: Bearer <admin_token>` (compared in
//! constant time), or from a page signed in on /connections: its session cookie ([`Sessions`]),
//! plus the session's CSRF token in `X-CSRF-Token` for anything but GET (the playground's page
//! calls the API this way); [`JsonBody`], a JSON body whose every rejection is the common
//! `{"error", "detail"}` answer. Guarantees: with no token configured the admin API is off and
//! answers 404 `admin_disabled`; sessions live in memory only (signing in again after a
//! restart is the price of keeping no session secrets on disk) and last 12 hours.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::FromRef;

use crate::config::Config;
use crate::error::ApiError;
use crate::html;
use crate::store::now_ms;

/// The admin session's cookie.
pub const COOKIE: &str = "cw_admin";
const SESSION_MS: u64 = 12 * 3600 * 1000;

/// What the gate reads: the admin token (in the settings) and the signed-in sessions.
#[derive(Clone)]
pub struct Gate {
    /// The settings.
    pub config: Arc<Config>,
    /// Signed-in sessions of the admin pages.
    pub sessions: Arc<Sessions>,
}

/// Proof that the request carried the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    Gate: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = Gate::from_ref(state);
        let Some(token) = state.config.admin_token.as_deref() else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "admin_disabled",
                "the admin API is off: set admin_token in the config to turn it on",
            ));
        };
        if parts.headers.get(AUTHORIZATION).is_none() {
            if let Some(csrf) = state.sessions.csrf(&parts.headers) {
                let given = parts
                    .headers
                    .get("x-csrf-token")
                    .map(|v| v.as_bytes())
                    .unwrap_or_default();
                if parts.method == axum::http::Method::GET
                    || bool::from(given.ct_eq(csrf.as_bytes()))
                {
                    return Ok(Admin);
                }
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "send the session's CSRF token in X-CSRF-Token (reload the page)",
                ));
            }
        }
        let given = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <admin_token>"))?;
        if bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized("the admin token is wrong"))
        }
    }
}

/// A JSON request body whose rejections use the common error body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                "invalid_body",
                rejection.body_text(),
            )),
        }
    }
}

/// Signed-in sessions, by the digest of their cookie.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

#[derive(Clone)]
pub struct Session {
    /// The token every changing form and API call of the session carries.
    pub csrf: String,
    /// When it ends (Unix milliseconds).
    pub expires_ms: u64,
}

impl Sessions {
    /// Signs a browser in: the session's cookie value and the session.
    pub fn start(&self) -> (String, Session) {
        let id = html::token(24);
        let s = Session {
            csrf: html::token(16),
            expires_ms: now_ms() + SESSION_MS,
        };
        let mut all = self.0.lock().expect("sessions lock");
        let now = now_ms();
        all.retain(|_, s| s.expires_ms > now);
        all.insert(html::digest(&id), s.clone());
        (id, s)
    }

    /// The session the request's cookie names, while it lasts.
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = html::cookie(headers, COOKIE)?;
        let all = self.0.lock().expect("sessions lock");
        all.get(&html::digest(&id))
            .filter(|s| s.expires_ms > now_ms())
            .cloned()
    }

    /// The CSRF token of the session the request's cookie names, if it is signed in.
    pub fn csrf(&self, headers: &HeaderMap) -> Option<String> {
        self.get(headers).map(|s| s.csrf)
    }

    /// Signs the request's session out.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = html::cookie(headers, COOKIE) {
            self.0
                .lock()
                .expect("sessions lock")
                .remove(&html::digest(&id));
        }
    }
}

/// The gate's answers, checked through a router with axum's `oneshot`: no gateway needed.
#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app(token: Option<&str>) -> (Router, Arc<Sessions>) {
        let config = Config {
            admin_token: token.map(str::to_string),
            ..Config::default()
        };
        let sessions = Arc::new(Sessions::default());
        let gate = Gate {
            config: Arc::new(config),
            sessions: sessions.clone(),
        };
        let router =
            Router::new()
                .route(
                    "/api/x",
                    get(|_: Admin| async { "in" }).post(
                        |_: Admin, JsonBody(v): JsonBody<serde_json::Value>| async move {
                            v.to_string()
                        },
                    ),
                )
                .with_state(gate);
        (router, sessions)
    }

    async fn call(
        app: &Router,
        method: Method,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri("/api/x");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn without_a_token_the_admin_api_is_off() {
        let (app, _) = app(None);
        let (status, body) = call(&app, Method::GET, &[("authorization", "Bearer x")], "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("\"error\":\"admin_disabled\""), "{body}");
    }

    #[tokio::test]
    async fn only_the_admin_token_opens_it() {
        let (app, _) = app(Some("s3cret"));
        let (status, body) = call(&app, Method::GET, &[], "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("\"detail\""), "{body}");
        let wrong = [("authorization", "Bearer nope")];
        assert_eq!(
            call(&app, Method::GET, &wrong, "").await.0,
            StatusCode::UNAUTHORIZED
        );
        let right = [("authorization", "Bearer s3cret")];
        assert_eq!(
            call(&app, Method::GET, &right, "").await,
            (StatusCode::OK, "in".into())
        );
    }

    #[tokio::test]
    async fn a_session_reads_freely_and_changes_only_with_its_csrf_token() {
        let (app, sessions) = app(Some("s3cret"));
        let (id, session) = sessions.start();
        let cookie = format!("{COOKIE}={id}");
        let (status, _) = call(&app, Method::GET, &[("cookie", &cookie)], "").await;
        assert_eq!(status, StatusCode::OK);
        let json = ("content-type", "application/json");
        let (status, body) = call(&app, Method::POST, &[("cookie", &cookie), json], "{}").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("\"error\":\"csrf\""), "{body}");
        let with = [
            ("cookie", cookie.as_str()),
            ("x-csrf-token", &session.csrf),
            json,
        ];
        assert_eq!(
            call(&app, Method::POST, &with, "{\"a\":1}").await,
            (StatusCode::OK, "{\"a\":1}".into())
        );
        // A session that ended opens nothing.
        let mut ended = axum::http::HeaderMap::new();
        ended.insert("cookie", cookie.parse().unwrap());
        sessions.end(&ended);
        assert_eq!(
            call(&app, Method::GET, &[("cookie", &cookie)], "").await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_gets_the_common_error() {
        let (app, _) = app(Some("s3cret"));
        let headers = [
            ("authorization", "Bearer s3cret"),
            ("content-type", "application/json"),
        ];
        let (status, body) = call(&app, Method::POST, &headers, "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("\"error\":\"invalid_body\""), "{body}");
        assert!(body.contains("\"detail\""), "{body}");
    }
}
