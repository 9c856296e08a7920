//! The admin pages: /connections (sign in, see, pause, resume and remove connections), the
//! home page, /docs and the 404 page for browsers. The gate they and the API share is
//! [`crate::gate`].

pub mod home;
pub mod pages;
