//! What the cluster benchmarks (`e2e/examples/bench_*.rs`) share.

use std::fmt::Display;
use std::str::FromStr;

/// The number in environment variable `name`, or `default` when it is unset; panics naming the
/// variable when it is set to something else.
pub fn env_number<T: FromStr + Display>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}
