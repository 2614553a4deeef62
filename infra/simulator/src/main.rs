//! `sf-simulator`: runs the Salesforce simulator until killed and prints one JSON line with its
//! URLs and client credentials on stdout. Logs go to stderr.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sf_simulator::{Org, OrgSpec, SimConfig, Simulator};

#[derive(Parser, Debug)]
#[command(name = "sf-simulator", about = "A Salesforce simulator on 127.0.0.1")]
struct Args {
    /// Serve the demo org (the default).
    #[arg(long, conflicts_with = "cases")]
    sample: bool,
    /// Serve a generated org with N closed, queue-owned Cases (benchmark).
    #[arg(long)]
    cases: Option<usize>,
    /// Seed of the org's content.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Latency added to every /services/data call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Port of the login host (0 = random).
    #[arg(long, default_value_t = 0)]
    login_port: u16,
    /// Port of the instance host (0 = random).
    #[arg(long, default_value_t = 0)]
    instance_port: u16,
    /// Enable Refresh Token Rotation.
    #[arg(long)]
    rotate: bool,
    /// Emails per generated Case, `MIN-MAX` (with --cases).
    #[arg(long, default_value = "0-10", value_parser = parse_range)]
    emails_per_case: (u32, u32),
    /// Bytes per generated email body, `MIN-MAX` (with --cases).
    #[arg(long, default_value = "500-8000", value_parser = parse_range)]
    body_bytes: (u32, u32),
    /// Never compress answers (by default they are gzip-compressed when the client accepts it,
    /// as Salesforce does).
    #[arg(long)]
    no_gzip: bool,
}

fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {s:?}"))?;
    let a: u32 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u32 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if a > b {
        return Err(format!("{a} > {b}"));
    }
    Ok((a, b))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let org = match args.cases {
        Some(n) => Org::generated(OrgSpec {
            cases: n,
            seed: args.seed,
            emails_per_case: args.emails_per_case.0..=args.emails_per_case.1,
            body_bytes: args.body_bytes.0..=args.body_bytes.1,
            ..OrgSpec::default()
        }),
        None => Org::sample(args.seed, chrono::Utc::now()),
    };
    let config = SimConfig {
        latency: Duration::from_millis(args.latency_ms),
        login_port: args.login_port,
        instance_port: args.instance_port,
        rotate_refresh_tokens: args.rotate,
        seed: args.seed,
        gzip: !args.no_gzip,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, org)
        .await
        .context("starting the simulator")?;
    println!(
        "{}",
        serde_json::json!({
            "login_url": sim.login_url(),
            "instance_url": sim.instance_url(),
            "client_id": sim.client_id(),
            "client_secret": sim.client_secret(),
        })
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
