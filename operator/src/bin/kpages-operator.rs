//! `kpages-operator`: parses flags, sets up logging, runs a subcommand (see the library's `cli`).

use std::process::ExitCode;

use clap::Parser;
use kpages_operator::cli::{self, Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    // Several rustls crypto providers are compiled in (kube: ring; object_store, async-nats:
    // aws-lc-rs), so rustls cannot pick one itself: use ring everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Run(args) => match args.config() {
            Ok(config) => match kube::Client::try_default().await {
                Ok(client) => cli::run(client, config, std::future::pending()).await,
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        },
        Command::FetchBundles(args) => cli::fetch(&args).await,
        Command::TriggerSchedule(args) => cli::trigger(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kpages-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
