//! `kpages crd`: the CRDs users install with `kpages crd | kubectl apply -f -`.

use std::io::Write;
use std::path::PathBuf;

use kpages_crds::generate;

/// Arguments of `kpages crd`.
#[derive(clap::Args)]
pub struct Args {
    /// Write one file per CRD into this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the deploy manifest's JSON Schema instead of the CRDs.
    #[arg(long, conflicts_with = "out")]
    manifest_schema: bool,
}

/// Runs `kpages crd`.
pub fn run(args: &Args) -> std::io::Result<()> {
    if args.manifest_schema {
        return std::io::stdout().write_all(generate::manifest_schema_json().as_bytes());
    }
    match &args.out {
        None => std::io::stdout().write_all(generate::all_crds_yaml().as_bytes()),
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for (file, crd) in generate::crds() {
                std::fs::write(dir.join(file), generate::crd_yaml(&crd))?;
            }
            Ok(())
        }
    }
}
