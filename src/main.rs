//! The `sluice` binary: parse the configuration, then serve.

use clap::Parser;
use sluice::server::{application::Application, config::Cli};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    sluice::server::telemetry::init();
    let settings = cli.into_settings();
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
