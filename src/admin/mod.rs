//! The admin pages: /connections (sign in, see, pause, resume and remove connections),
//! /sources (the sources and a GitHub App made for one: [`sources`]; GitLab hooks made by
//! token: [`gitlab`]), the home page, /docs and
//! the 404 page for browsers. The gate they and the API share is
//! [`crate::gate`].

pub mod gitlab;
pub mod home;
pub mod pages;
pub mod sources;
