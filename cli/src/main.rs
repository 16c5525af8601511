//! `kpages`: build, serve and deploy "Pages + Functions" sites.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod build;
mod crd;
mod dev;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => build::run(&args),
        Command::Crd(args) => crd::run(&args),
        Command::Dev(args) => dev::run(&args).map_err(std::io::Error::other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kpages: {err}");
            ExitCode::FAILURE
        }
    }
}
