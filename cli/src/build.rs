//! `kpages build [DIR] [--out DIR]`: package a site into blobs and a deploy manifest.
//! All the work is in `kpages-sitebuild`; this prints what happened.

use std::path::PathBuf;

/// Arguments of `kpages build`.
#[derive(clap::Args)]
pub struct Args {
    /// The site directory.
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Where to write `blobs/sha256/<hex>` (default: DIR/.kpages/out).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The esbuild binary (default: $KPAGES_ESBUILD, the source tree's tools/, then PATH).
    #[arg(long, value_name = "FILE")]
    esbuild: Option<PathBuf>,
}

/// Runs `kpages build`; the manifest digest is the last line on stdout.
pub fn run(args: &Args) -> std::io::Result<()> {
    let report = kpages_sitebuild::build(&kpages_sitebuild::BuildOptions {
        site_dir: args.dir.clone(),
        out_dir: args.out.clone(),
        esbuild: args.esbuild.clone(),
    })
    // The message names the file and line to fix; main prints it as is.
    .map_err(std::io::Error::other)?;
    let layouts: Vec<String> = report.layouts.iter().map(ToString::to_string).collect();
    println!("layout: {}", layouts.join(", "));
    println!(
        "{} static files, {} functions, {} rules; {} blobs ({} new) in {}",
        report.manifest.files.len(),
        report.manifest.functions.len(),
        report.manifest.rules.redirects.len()
            + report.manifest.rules.headers.len()
            + report.manifest.rules.cache.len(),
        report.blobs,
        report.new_blobs,
        report.out_dir.display()
    );
    println!("{}", report.digest);
    Ok(())
}
