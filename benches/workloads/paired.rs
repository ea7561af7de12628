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
//! [`SERVER_BATCH`]).
//!
//! SeaORM is timed apart, in rounds of its own after the others': 5-100 times slower, it
//! leaves work behind (sqlx's worker thread, its allocations) that slowed whichever peer ran
//! next, and with the order rotating, the same peer always ran next (eager loading of 1,000
//! posts read 1.26x of Diesel with SeaORM among the peers, 0.95x with SeaORM timed apart). Its ratio is of
//! the medians, taken in different stretches of time: on SQLite, at 0.01-0.9x, that is close
//! enough; on PostgreSQL it moves with the server's latency, as the others' would unpaired.
//!
//! `python3 benches/report.py --paired RUN.md ...` turns the tables of several runs into
//! BENCHMARKS.md's table and chart.

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
/// The peers measured in turn, in the report's order; datastore first.
const PEERS: [&str; 3] = ["datastore", "diesel", "rusqlite"];
/// The peer measured apart, after them.
const APART: &str = "seaorm";

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
    println!(
        "| workload | rows | datastore | hand-written Diesel | rusqlite | SeaORM \
         | datastore / Diesel | datastore / rusqlite | datastore / SeaORM \
         | rounds over 1.05x Diesel |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
}

/// Measures `work` (its own time, after an untimed `setup` each iteration) on the peers named
/// in [`PEERS`], in turn, then on [`APART`] alone, and prints the row.
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
    let (mut paired, mut apart): (Vec<_>, Vec<_>) = peers
        .iter_mut()
        .filter(|(name, _)| PEERS.contains(name) || *name == APART)
        .partition(|(name, _)| PEERS.contains(name));
    // Each round's ratios are to its first time.
    assert_eq!(paired[0].0, PEERS[0], "datastore is the first peer");
    let names: Vec<&str> = paired.iter().map(|(name, _)| *name).collect();
    let batch = if group.starts_with("PostgreSQL") {
        SERVER_BATCH
    } else {
        BATCH
    };
    let mut run = |peer: &mut P, iterations: usize| {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            let input = setup(peer);
            let start = Instant::now();
            work(peer, input);
            total += start.elapsed();
        }
        total
    };
    let rounds = Rounds::measure(&mut paired, batch, |(_, peer), n| run(peer, n));
    let apart = (!apart.is_empty())
        .then(|| Rounds::measure(&mut apart, batch, |(_, peer), n| run(peer, n)).time(0));
    let index = |name: &str| names.iter().position(|n| *n == name);
    let diesel = index("diesel");
    let over = diesel.map_or(0, |j| rounds.over(0, j, 1.05));
    let shown = |i: Option<usize>| i.map_or("–".to_owned(), |i| format_time(rounds.time(i)));
    let ratio = |r: Option<f64>| r.map_or("–".to_owned(), |r| format!("{r:.2}x"));
    println!(
        "| {group} | {parameter} | {} | {} | {} | {} | {} | {} | {} | {over} of {ROUNDS} |",
        shown(index("datastore")),
        shown(diesel),
        shown(index("rusqlite")),
        apart.map_or("–".to_owned(), format_time),
        ratio(diesel.map(|j| rounds.ratio(0, j))),
        ratio(index("rusqlite").map(|j| rounds.ratio(0, j))),
        ratio(apart.map(|seaorm| rounds.time(0) / seaorm)),
    );
}

/// Each round's time per iteration of every subject, measured in turn.
pub struct Rounds(Vec<Vec<Duration>>);

impl Rounds {
    /// Times `ROUNDS` rounds (after one of warm-up) of every subject in turn, the order
    /// rotating, each subject's batch about `batch` long and at least one iteration (three
    /// iterations first, not counted, tell how many fit); `time(subject, n)` runs `n`
    /// iterations and returns the time they took.
    pub fn measure<S>(
        subjects: &mut [S],
        batch: Duration,
        mut time: impl FnMut(&mut S, usize) -> Duration,
    ) -> Self {
        let mut per_iteration =
            |subject: &mut S, iterations: usize| time(subject, iterations) / iterations as u32;
        // One iteration's time, so that a batch runs about `batch`.
        let batches: Vec<usize> = subjects
            .iter_mut()
            .map(|subject| {
                let once = per_iteration(subject, 3).max(Duration::from_nanos(50));
                (batch.as_nanos() / once.as_nanos()).clamp(1, 100_000) as usize
            })
            .collect();
        let mut rounds = Vec::with_capacity(ROUNDS);
        for round in 0..=ROUNDS {
            let mut times = vec![Duration::ZERO; subjects.len()];
            for turn in 0..subjects.len() {
                let i = (round + turn) % subjects.len();
                times[i] = per_iteration(&mut subjects[i], batches[i]);
            }
            if round > 0 {
                rounds.push(times);
            }
        }
        Self(rounds)
    }

    /// The median of subject `i`'s times, in seconds.
    pub fn time(&self, i: usize) -> f64 {
        median(self.0.iter().map(|r| r[i].as_secs_f64()).collect())
    }

    /// The median of the rounds' ratios of subject `i`'s time to subject `j`'s.
    pub fn ratio(&self, i: usize, j: usize) -> f64 {
        median(
            self.0
                .iter()
                .map(|r| r[i].as_secs_f64() / r[j].as_secs_f64())
                .collect(),
        )
    }

    /// In how many rounds subject `i` took more than `limit` times subject `j`'s time.
    pub fn over(&self, i: usize, j: usize, limit: f64) -> usize {
        self.0
            .iter()
            .filter(|r| r[i].as_secs_f64() > limit * r[j].as_secs_f64())
            .count()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A time in seconds as the tables show it, in ns, µs or ms.
pub fn format_time(seconds: f64) -> String {
    match seconds {
        s if s < 1e-6 => format!("{:.0} ns", s * 1e9),
        s if s < 1e-3 => format!("{:.2} µs", s * 1e6),
        s => format!("{:.2} ms", s * 1e3),
    }
}
