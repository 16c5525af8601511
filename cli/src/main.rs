//! `kpages`: build, serve and deploy "Pages + Functions" sites.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod build;
mod cluster;
mod crd;
mod deploy;
mod dev;
#[cfg(test)]
mod fake_api;
mod node_host;
mod rollback;
mod status;
mod upload;
mod watch;

/// Self-hosted Pages + Functions: build sites written for Netlify or EdgeOne Pages, run them
/// locally with `kpages dev`, deploy them to Kubernetes.
#[derive(Parser)]
#[command(name = "kpages", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Package a site (EdgeOne Pages, Netlify or static) into blobs and a deploy manifest;
    /// prints the manifest digest last.
    Build(build::Args),
    /// Build the site and serve it locally with its functions, rebuilding on changes.
    Dev(dev::Args),
    /// Print the CustomResourceDefinitions (Site, Deploy, FunctionRoute) as YAML.
    Crd(crd::Args),
    /// Build the site, upload what object storage lacks, create the Deploy and wait until it
    /// is Ready; prints its URL last (exit 3: timed out, 4: the Deploy failed).
    Deploy(Box<deploy::Args>),
    /// Serve an earlier production deploy (pin it), or the newest again with --unpin.
    Rollback(rollback::Args),
    /// Show a site's URL, active deploy, conditions and deploys.
    Status(status::Args),
}

fn main() -> ExitCode {
    // Several rustls crypto providers are compiled in (kube: ring; object_store, async-nats:
    // aws-lc-rs), so rustls cannot pick one itself: use ring everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result: Result<(), (Box<dyn std::error::Error>, u8)> = match cli.command {
        Command::Build(args) => build::run(&args).map_err(|e| (e.into(), 1)),
        Command::Crd(args) => crd::run(&args).map_err(|e| (e.into(), 1)),
        Command::Dev(args) => dev::run(&args).map_err(|e| (e.into(), 1)),
        Command::Deploy(args) => deploy::run(&args).map_err(|e| {
            let code = e.exit_code();
            (e.into(), code)
        }),
        Command::Rollback(args) => rollback::run(&args).map_err(|e| {
            let code = e.exit_code();
            (e.into(), code)
        }),
        Command::Status(args) => status::run(&args).map_err(|e| (e.into(), 1)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((err, code)) => {
            eprintln!("kpages: {err}");
            ExitCode::from(code)
        }
    }
}
