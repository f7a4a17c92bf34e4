//! Everything that runs only on the server (feature `ssr`).

pub mod application;
pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod downstream_example;
pub mod housekeeping;
pub mod http;
pub mod memo;
pub mod metrics;
pub mod no_return;
pub mod processor;
pub mod scheduler;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod timeline;
