//! End-to-end tests: the real gateway on 127.0.0.1:0, sled in a temp dir, and a scriptable
//! receiver standing in for Teams. One binary, one module per area.

mod browser;
mod cards;
mod cli;
mod connect;
mod connections;
mod crash;
mod delivery;
mod disk;
mod docs;
mod fallback;
mod home;
mod hooks;
mod install;
mod instances;
mod layers;
mod limits;
mod noise;
mod oauth;
mod pg;
mod pg_tls;
mod platforms;
mod playground;
mod postgres;
mod reload;
mod sdk;
mod shipped;
mod sources;
mod store;
mod telemetry;
mod updates;
mod utils;
mod variants;
