//! The admin API's gate and body reader, shared by everything under `/api`.
//!
//! [`Admin`] is an extractor: a handler that takes it runs only for a request with
//! `Authorization: Bearer <admin_token>` (compared in constant time), or from a page signed in on
//! /connections: its session cookie, plus the session's CSRF token in `X-CSRF-Token` for anything
//! but GET (the playground's page calls the API this way). With no token configured
//! the admin API is off and answers 404 `admin_disabled`. [`JsonBody`] reads a JSON body and
//! turns every rejection into the common `{"error", "detail"}` answer.

pub mod home;
pub mod pages;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use std::sync::Arc;

use axum::extract::FromRef;

use crate::config::Config;
use crate::error::ApiError;

/// What the gate reads: the admin token (in the settings) and the signed-in sessions.
#[derive(Clone)]
pub struct Gate {
    /// The settings.
    pub config: Arc<Config>,
    /// Signed-in sessions of the admin pages.
    pub sessions: Arc<pages::Sessions>,
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
