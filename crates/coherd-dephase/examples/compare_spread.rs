//! Compares the peak slot load of three ways to place N members in a window:
//! `spread` (even spread over the known membership), uniform random jitter
//! (like systemd's `RandomizedDelaySec`) and plain hashing (`stable_offset`).
//!
//! Run with `cargo run --release -p coherd-dephase --example compare_spread`;
//! it prints a markdown table. Random jitter and hashing are repeated over
//! `TRIALS` seeds and job names; the table shows the mean and the worst trial.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::time::Duration;

use coherd_dephase::{DephaseError, histogram, spread, stable_offset};

const WINDOW: Duration = Duration::from_secs(600);
const SLOTS: usize = 60;
const TRIALS: usize = 200;
const SIZES: [usize; 3] = [100, 1_000, 10_000];

fn main() -> Result<(), DephaseError> {
    let slot = WINDOW / SLOTS as u32;
    println!(
        "Window {}s cut into {SLOTS} slots of {}s; peak slot load / ideal, where ideal = ceil(N * slot / window). \
         Random and hashing: mean (worst) over {TRIALS} trials.\n",
        WINDOW.as_secs(),
        slot.as_secs()
    );
    println!("| N | ideal per slot | spread | uniform random jitter | hashing (stable_offset) |");
    println!("|---:|---:|---:|---:|---:|");
    for n in SIZES {
        let ideal = (n as u128 * slot.as_nanos()).div_ceil(WINDOW.as_nanos()) as f64;
        let members: Vec<String> = (0..n).map(|i| format!("host-{i:05}")).collect();

        let even = spread(&members, "job-0", WINDOW)?;
        let even_peak = peak(even.iter().map(|(_, offset)| offset))?;

        let mut rng = fastrand::Rng::with_seed(2024);
        let random: Vec<usize> = (0..TRIALS)
            .map(|_| peak((0..n).map(|_| WINDOW.mul_f64(rng.f64()))))
            .collect::<Result<_, _>>()?;

        let hashed: Vec<usize> = (0..TRIALS)
            .map(|trial| {
                let job = format!("job-{trial}");
                peak(members.iter().map(|m| stable_offset(m, &job, WINDOW)))
            })
            .collect::<Result<_, _>>()?;

        println!(
            "| {n} | {ideal} | {:.2} | {} | {} |",
            even_peak as f64 / ideal,
            summary(&random, ideal),
            summary(&hashed, ideal),
        );
    }
    Ok(())
}

/// The fullest slot's count.
fn peak(offsets: impl Iterator<Item = Duration>) -> Result<usize, DephaseError> {
    Ok(histogram(offsets, WINDOW, SLOTS)?
        .into_iter()
        .max()
        .unwrap_or(0))
}

/// "mean (worst)" of the peaks over the ideal.
fn summary(peaks: &[usize], ideal: f64) -> String {
    let mean = peaks.iter().sum::<usize>() as f64 / peaks.len() as f64;
    let worst = peaks.iter().copied().max().unwrap_or(0);
    format!("{:.2} ({:.2})", mean / ideal, worst as f64 / ideal)
}
