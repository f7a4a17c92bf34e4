//! The `sluice` binary: serve (the default), or act as a client of a running server.

use clap::Parser;
use sluice::server::{
    application::Application,
    config::{Cli, Run},
};
use std::process::ExitCode;

/// See `Cargo.toml`: measured against glibc's malloc in docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Cli::parse().into_run() {
        Run::Serve(settings) => *settings,
        Run::Client(command) => {
            return match sluice::server::client::run(*command).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("sluice: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    sluice::server::telemetry::init();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("sluice: cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match app
        .run_until(sluice::server::application::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
