//! The PostgreSQL workloads on one core: the benchmark's thread and the server's backends.
//!
//! On this two-core virtual machine a round trip to a backend on the benchmark's own core takes
//! about 17 µs, and about 70 µs to one on the other core (the server's reply wakes a virtual
//! CPU that had gone idle). Which core each peer's backend lands on is the scheduler's choice,
//! kept for the whole run: on 2026-12-06 it made find by id 3.8x of Diesel in two runs and 0.3x
//! in the third, by which peer's backend had the other core. With every backend started during
//! the workloads on the benchmark's core, both peers took 17 µs (see BENCHMARKS.md, "Where
//! PostgreSQL's backend runs").
//!
//! A backend inherits its CPU affinity from the postmaster that forks it, so [`OneCore::pin`]
//! sets the postmaster's and the calling thread's, and puts both back when dropped; backends
//! forked meanwhile stay on the one core until they end (the workloads' connections end with
//! their groups). It needs the server on this machine (the postmaster found as the parent of
//! the connection's backend, whose working directory is the server's data directory: reading
//! that setting takes a superuser or `pg_read_all_settings`, reading the directory the
//! server's user or root) and the right to set its affinity (the server's user, or
//! `CAP_SYS_NICE`, as root has); otherwise the workloads run unpinned, and say so. The
//! postmaster's affinity before is recorded in the build's temporary directory
//! (`target/tmp`) until it is put back: a run killed meanwhile leaves the postmaster on one
//! core, and the next run puts it back as its PostgreSQL workloads end (or `taskset -p -c
//! 0-$(($(nproc) - 1)) <pid>`, the pid being the first line of the data directory's
//! `postmaster.pid`, or a restart of the server).

#[cfg(target_os = "linux")]
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
#[cfg(target_os = "linux")]
use nix::unistd::Pid;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use datastore::diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

/// The affinities [`OneCore::pin`] changed, put back on drop, on the thread it pinned (not
/// `Send`: the thread's own affinity is put back by addressing the calling thread).
pub struct OneCore {
    /// The postmaster, its affinity before, and where that is recorded meanwhile.
    #[cfg(target_os = "linux")]
    postmaster: (Pid, CpuSet, PathBuf),
    #[cfg(target_os = "linux")]
    thread: CpuSet,
    _not_send: PhantomData<*const ()>,
}

#[derive(QueryableByName)]
struct Backend {
    #[diesel(sql_type = datastore::diesel::sql_types::Integer)]
    pid: i32,
    #[diesel(sql_type = datastore::diesel::sql_types::Text)]
    data_directory: String,
}

impl OneCore {
    /// Puts the calling thread and the backends the server at `url` starts from now on, on the
    /// first core the thread may run on; `Err` says why not.
    pub fn pin(url: &str) -> Result<Self, String> {
        let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
        let backend = datastore::diesel::sql_query(
            "SELECT pg_backend_pid() AS pid, current_setting('data_directory') AS data_directory",
        )
        .get_result::<Backend>(&mut conn)
        .map_err(|e| e.to_string())?;
        let postmaster = postmaster_of(backend.pid, Path::new(&backend.data_directory))?;
        Self::pin_with(postmaster)
    }

    #[cfg(target_os = "linux")]
    fn pin_with(postmaster: i32) -> Result<Self, String> {
        let postmaster = Pid::from_raw(postmaster);
        let this_thread = Pid::from_raw(0);
        let thread = sched_getaffinity(this_thread).map_err(|e| e.to_string())?;
        let core = cores(&thread)
            .next()
            .ok_or("the thread may run on no core")?;
        let mut one = CpuSet::new();
        one.set(core).map_err(|e| e.to_string())?;
        let record = record_of(postmaster)?;
        // What a run killed while pinned left: its postmaster's affinity as it found it.
        let before = match left_pinned(&record) {
            Some(found) => found,
            None => sched_getaffinity(postmaster).map_err(|e| e.to_string())?,
        };
        let listed: Vec<String> = cores(&before).map(|cpu| cpu.to_string()).collect();
        std::fs::write(&record, listed.join(" ")).map_err(|e| e.to_string())?;
        if let Err(e) = sched_setaffinity(postmaster, &one) {
            let _ = std::fs::remove_file(&record);
            return Err(format!("the postmaster's affinity: {e}"));
        }
        let pinned = Self {
            postmaster: (postmaster, before, record),
            thread,
            _not_send: PhantomData,
        };
        sched_setaffinity(this_thread, &one).map_err(|e| e.to_string())?;
        Ok(pinned)
    }

    #[cfg(not(target_os = "linux"))]
    fn pin_with(_postmaster: i32) -> Result<Self, String> {
        Err("CPU affinity is set on Linux only".into())
    }
}

impl Drop for OneCore {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        {
            let (postmaster, before, record) = &self.postmaster;
            match sched_setaffinity(*postmaster, before) {
                Ok(()) => {
                    let _ = std::fs::remove_file(record);
                }
                Err(e) => eprintln!("the postmaster's affinity was not put back: {e}"),
            }
            let _ = sched_setaffinity(Pid::from_raw(0), &self.thread);
        }
    }
}

/// Where a pinned postmaster's affinity before the pinning is recorded until it is put back,
/// so that a run killed meanwhile is undone by the next: in the build's own temporary
/// directory, named by the postmaster's number and its start (a postmaster started since, with
/// the same number, is another).
#[cfg(target_os = "linux")]
fn record_of(postmaster: Pid) -> Result<PathBuf, String> {
    // The 22nd field of `stat`, its start in clock ticks after boot.
    let start =
        stat_field(postmaster.as_raw(), 19).ok_or("the postmaster's start: not in /proc")?;
    Ok(Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("postmaster-{postmaster}-{start}.affinity")))
}

/// The affinity recorded in `record` by a run that did not put it back, if any.
#[cfg(target_os = "linux")]
fn left_pinned(record: &Path) -> Option<CpuSet> {
    let recorded = std::fs::read_to_string(record).ok()?;
    let mut cores = CpuSet::new();
    let mut any = false;
    for core in recorded.split_whitespace() {
        cores.set(core.parse().ok()?).ok()?;
        any = true;
    }
    any.then(|| {
        eprintln!(
            "the postmaster's affinity, left on one core by a run killed before, is put back as \
             this run's PostgreSQL workloads end"
        );
        cores
    })
}

/// The postmaster of the backend `pid`, where the server runs on this machine: its parent, a
/// process named `postgres` working in the server's data directory `data_directory` (a
/// process of this machine with the same number, a server's elsewhere, fails the test).
fn postmaster_of(pid: i32, data_directory: &Path) -> Result<i32, String> {
    let not_here = || format!("backend {pid} is not a process of this machine's server");
    let parent: i32 = stat_field(pid, 1)
        .and_then(|ppid| ppid.parse().ok())
        .ok_or_else(not_here)?;
    let name = std::fs::read_to_string(format!("/proc/{parent}/comm")).map_err(|_| not_here())?;
    let directory = std::fs::read_link(format!("/proc/{parent}/cwd")).map_err(|_| not_here())?;
    let same_directory = data_directory
        .canonicalize()
        .is_ok_and(|data_directory| data_directory == directory);
    if name.trim() == "postgres" && same_directory {
        Ok(parent)
    } else {
        Err(not_here())
    }
}

/// The field `n` (from 0) after the name of process `pid`'s `/proc/<pid>/stat` (`pid (name)
/// state ppid ...`: the name may hold spaces, the fields after it do not), where it can be read.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    fields.split_whitespace().nth(n).map(str::to_owned)
}

/// The cores `set` holds, in order.
#[cfg(target_os = "linux")]
fn cores(set: &CpuSet) -> impl Iterator<Item = usize> + '_ {
    (0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false))
}
