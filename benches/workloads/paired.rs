//! The peers measured in turn: `DATASTORE_BENCH_PAIRED=1 cargo bench -p datastore-benches
//! --bench workloads` runs every workload this way instead of through criterion, and prints
//! a Markdown table of ratios. Any other value than `1` measures only the workloads whose
//! group's name contains it (`DATASTORE_BENCH_PAIRED="trivial query"`).
//!
//! Criterion times one peer for a second or so, then the next: on a machine whose speed drifts
//! over seconds (this one's did by half, 2026-12-03), a ratio of two such stretches measures
//! the drift as much as the peers. Here each round times a short batch of every peer, one
//! after the other (the order rotating from round to round), and takes the ratio within the
//! round; a row's ratio is the median of its rounds' ratios, so a slow stretch moves the peers
//! of a round together and leaves the ratio alone (on PostgreSQL the batches are longer: see
//! [`SERVER_BATCH`]). SeaORM, 5-100 times slower than the
//! others, is left out: its batches would make the rounds long.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Rounds per workload, after one round of warm-up.
const ROUNDS: usize = 31;
/// About how long one peer's batch runs in a round.
const BATCH: Duration = Duration::from_millis(3);
/// The same on PostgreSQL, whose round trips to a server on the same cores have two speeds
/// (in batches of 3 ms, find by key moved between 0.39x and 2.65x of Diesel from run to run):
/// a batch long enough to hold both.
const SERVER_BATCH: Duration = Duration::from_millis(30);
/// The peers measured, in the report's order; datastore first.
const PEERS: [&str; 3] = ["datastore", "diesel", "rusqlite"];

thread_local! {
    /// The name of the workload group being measured (set where criterion's groups are made).
    static GROUP: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Whether the workloads run paired (`DATASTORE_BENCH_PAIRED` set) rather than through
/// criterion.
pub fn enabled() -> bool {
    std::env::var_os("DATASTORE_BENCH_PAIRED").is_some()
}

/// Whether the group named `group` is measured: every group, or those whose name contains
/// `DATASTORE_BENCH_PAIRED`'s value when it is not `1`.
fn selected(group: &str) -> bool {
    match std::env::var("DATASTORE_BENCH_PAIRED") {
        Ok(only) if only != "1" => group.contains(&only),
        _ => true,
    }
}

/// Names the group whose workloads are measured next.
pub fn set_group(name: &str) {
    GROUP.with(|group| name.clone_into(&mut group.borrow_mut()));
}

/// Prints the table's header.
pub fn header() {
    println!("| workload | rows | datastore | hand-written Diesel | rusqlite | datastore / Diesel | datastore / rusqlite | rounds over 1.05x Diesel |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
}

/// Measures `work` (its own time, after an untimed `setup` each iteration) on the peers named
/// in [`PEERS`], in turn, and prints the row.
pub fn measure<P: ?Sized, T>(
    parameter: &str,
    peers: &mut [(&'static str, Box<P>)],
    mut setup: impl FnMut(&mut P) -> T,
    mut work: impl FnMut(&mut P, T),
) {
    let group = GROUP.with(|group| group.borrow().clone());
    if !selected(&group) {
        return;
    }
    let mut peers: Vec<_> = peers
        .iter_mut()
        .filter(|(name, _)| PEERS.contains(name))
        .collect();
    // Each round's ratios are to its first time.
    assert_eq!(peers[0].0, PEERS[0], "datastore is the first peer");
    // One iteration's time, so that a batch runs about `BATCH`.
    let mut time = |peer: &mut P, iterations: usize| {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            let input = setup(peer);
            let start = Instant::now();
            work(peer, input);
            total += start.elapsed();
        }
        total / iterations as u32
    };
    let batch = if group.starts_with("PostgreSQL") {
        SERVER_BATCH
    } else {
        BATCH
    };
    let batches: Vec<usize> = peers
        .iter_mut()
        .map(|(_, peer)| {
            let once = time(peer, 3).max(Duration::from_nanos(50));
            (batch.as_nanos() / once.as_nanos()).clamp(1, 100_000) as usize
        })
        .collect();
    // Per round, each peer's time per iteration.
    let mut rounds: Vec<Vec<Duration>> = Vec::with_capacity(ROUNDS);
    for round in 0..=ROUNDS {
        let mut times = vec![Duration::ZERO; peers.len()];
        for turn in 0..peers.len() {
            let i = (round + turn) % peers.len();
            times[i] = time(&mut peers[i].1, batches[i]);
        }
        if round > 0 {
            rounds.push(times);
        }
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let index = |name: &str| peers.iter().position(|(n, _)| *n == name);
    let time_of = |i: usize| median(rounds.iter().map(|r| r[i].as_secs_f64()).collect());
    let ratio_to = |other: Option<usize>| {
        other.map(|j| {
            median(
                rounds
                    .iter()
                    .map(|r| r[0].as_secs_f64() / r[j].as_secs_f64())
                    .collect(),
            )
        })
    };
    let diesel = index("diesel");
    let over = diesel.map_or(0, |j| {
        rounds
            .iter()
            .filter(|r| r[0].as_secs_f64() > 1.05 * r[j].as_secs_f64())
            .count()
    });
    let shown = |i: Option<usize>| i.map_or("–".to_owned(), |i| format_time(time_of(i)));
    let ratio = |r: Option<f64>| r.map_or("–".to_owned(), |r| format!("{r:.2}x"));
    println!(
        "| {group} | {parameter} | {} | {} | {} | {} | {} | {over} of {ROUNDS} |",
        shown(index("datastore")),
        shown(diesel),
        shown(index("rusqlite")),
        ratio(ratio_to(diesel)),
        ratio(ratio_to(index("rusqlite"))),
    );
}

fn format_time(seconds: f64) -> String {
    match seconds {
        s if s < 1e-6 => format!("{:.0} ns", s * 1e9),
        s if s < 1e-3 => format!("{:.2} µs", s * 1e6),
        s => format!("{:.2} ms", s * 1e3),
    }
}
