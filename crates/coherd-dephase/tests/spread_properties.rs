//! Property tests for the guarantees documented on `Spread`.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::time::Duration;

use coherd_dephase::{Spread, spread};
use proptest::prelude::*;

fn members(n: usize, salt: u32) -> Vec<String> {
    (0..n).map(|i| format!("member-{salt}-{i}")).collect()
}

/// The largest number of offsets in any half-open interval of length `width`.
fn densest(fleet: &Spread, width: Duration) -> usize {
    let mut offsets: Vec<Duration> = fleet.iter().map(|(_, offset)| offset).collect();
    offsets.sort();
    // The densest interval can be taken to start at an offset.
    (0..offsets.len())
        .map(|i| offsets[i..].partition_point(|&o| o < offsets[i] + width))
        .max()
        .unwrap_or(0)
}

/// `ceil(n * width / window)`, the ideal load of an interval of length `width`.
fn ideal(n: usize, width: Duration, window: Duration) -> usize {
    (n as u128 * width.as_nanos()).div_ceil(window.as_nanos()) as usize
}

/// The largest move of any member present in both spreads.
fn largest_move(before: &Spread, after: &Spread) -> Duration {
    before
        .iter()
        .filter_map(|(member, old)| after.offset(member).map(|new| old.abs_diff(new)))
        .max()
        .unwrap_or(Duration::ZERO)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_interval_holds_more_than_the_ideal(
        n in 1usize..2000,
        window_ms in 1u64..100_000_000,
        extra_ns in 0u64..1_000_000,
        slots in 1u32..200,
        job in "[a-z]{1,8}",
        salt in any::<u32>(),
    ) {
        let window = Duration::from_millis(window_ms) + Duration::from_nanos(extra_ns);
        let fleet = spread(members(n, salt), &job, window).expect("no duplicates");
        prop_assert_eq!(fleet.len(), n);
        prop_assert!(fleet.iter().all(|(_, offset)| offset < window));
        let width = window / slots;
        prop_assume!(!width.is_zero());
        prop_assert!(densest(&fleet, width) <= ideal(n, width, window));
    }

    #[test]
    fn a_leave_moves_nobody_further_than_window_over_n(
        n in 2usize..600,
        leaver in any::<prop::sample::Index>(),
        window_ms in 1u64..100_000_000,
        job in "[a-z]{1,8}",
        salt in any::<u32>(),
    ) {
        let window = Duration::from_millis(window_ms);
        let all = members(n, salt);
        let gone = leaver.index(n);
        let rest: Vec<String> = all.iter().enumerate()
            .filter(|&(i, _)| i != gone).map(|(_, m)| m.clone()).collect();
        let before = spread(all, &job, window).expect("no duplicates");
        let after = spread(rest, &job, window).expect("no duplicates");
        let bound = Duration::from_nanos(window.as_nanos().div_ceil(n as u128) as u64);
        prop_assert_eq!(before.move_bound(), bound);
        prop_assert!(largest_move(&before, &after) <= bound);
    }

    #[test]
    fn a_join_moves_nobody_further_than_window_over_n(
        n in 1usize..600,
        window_ms in 1u64..100_000_000,
        job in "[a-z]{1,8}",
        salt in any::<u32>(),
    ) {
        let window = Duration::from_millis(window_ms);
        let before_members = members(n, salt);
        let mut after_members = before_members.clone();
        after_members.push("newcomer".to_owned());
        let before = spread(before_members, &job, window).expect("no duplicates");
        let after = spread(after_members, &job, window).expect("no duplicates");
        // N after the join is n + 1, the larger of the two.
        let bound = Duration::from_nanos(window.as_nanos().div_ceil(n as u128 + 1) as u64);
        prop_assert!(largest_move(&before, &after) <= bound);
        prop_assert!(bound <= before.move_bound());
    }

    #[test]
    fn offsets_do_not_depend_on_input_order(
        n in 1usize..300,
        seed in any::<u64>(),
    ) {
        let window = Duration::from_secs(3600);
        let ordered = members(n, 7);
        let mut shuffled = ordered.clone();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        prop_assert_eq!(
            spread(ordered, "job", window).expect("no duplicates"),
            spread(shuffled, "job", window).expect("no duplicates")
        );
    }
}

/// The check from the issue: N = 1000 over 600 s in 60 slots of 10 s holds at
/// most 17 per slot, and dropping one member moves nobody more than
/// 2 * window / N (the proven bound is window / N).
#[test]
fn issue_check_thousand_members_over_ten_minutes() {
    let window = Duration::from_secs(600);
    let all = members(1000, 0);
    let fleet = spread(all.clone(), "compact", window).expect("no duplicates");
    let mut slots = [0usize; 60];
    for (_, offset) in fleet.iter() {
        slots[(offset.as_secs() / 10) as usize] += 1;
    }
    assert!(slots.iter().all(|&count| count <= 17), "{slots:?}");
    assert!(densest(&fleet, Duration::from_secs(10)) <= 17);

    for gone in (0..1000).step_by(37) {
        let rest = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != gone)
            .map(|(_, m)| m.clone());
        let after = spread(rest, "compact", window).expect("no duplicates");
        let moved = largest_move(&fleet, &after);
        assert!(
            moved <= window / 1000,
            "dropping {gone} moved a member {moved:?}"
        );
        assert!(moved <= 2 * window / 1000);
    }
}
