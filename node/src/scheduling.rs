//! The kernel scheduling policy a node (and the benchmark's load generator) runs under.
//!
//! A relay's work comes as bursts of small frames on thousands of connections. Under the
//! default policy every frame that lands wakes the node's thread and may preempt whatever
//! runs, so on a machine shared with other nodes each burst costs a context switch per
//! frame. Under `SCHED_BATCH` a woken thread waits until the running one blocks or its slice
//! ends, and then finds many frames at once (bench/HISTORY.md, "The nodes under SCHED_BATCH").
//!
//! What the kernel reports of a thread or process (`/proc/.../stat`) is read here too: its
//! policy checks that the setting took, and its CPU time is what the benchmarks measure.

use isms_config::Scheduling;
use thread_priority::{
    NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
};

/// Puts the calling thread under `scheduling`. Threads it starts afterwards, and processes
/// it spawns, inherit the policy, so this runs first thing, before any runtime or store
/// starts its threads.
pub fn apply(scheduling: Scheduling) -> Result<(), String> {
    match scheduling {
        Scheduling::Inherit => Ok(()),
        Scheduling::Batch => {
            let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
            // The nice value an operator may have started us with stays.
            let nice = thread_stat()?.nice;
            let priority = priority_for(nice, policy)
                .ok_or_else(|| format!("no priority keeps nice value {nice}"))?;
            thread_priority::set_thread_priority_and_policy(
                thread_priority::thread_native_id(),
                priority,
                policy,
            )
            .map_err(|e| format!("cannot set SCHED_BATCH: {e:?}"))
        }
    }
}

/// The crate sets the nice value along with a normal policy, from a priority of 0-99: the
/// one that gives `nice`.
fn priority_for(nice: i32, policy: ThreadSchedulePolicy) -> Option<ThreadPriority> {
    (0..=u8::from(ThreadPriorityValue::MAX))
        .filter_map(|p| ThreadPriorityValue::try_from(p).ok())
        .map(ThreadPriority::Crossplatform)
        .find(|p| p.to_posix(policy) == Ok(nice))
}

/// `SCHED_BATCH` as [`ProcStat::policy`] reports it.
pub const SCHED_BATCH: u32 = 3;

/// A thread's (or a whole process's) nice value, scheduling policy and CPU time, as the
/// kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub nice: i32,
    /// `SCHED_OTHER` 0, `SCHED_BATCH` 3, `SCHED_IDLE` 5; the real-time policies between.
    pub policy: u32,
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

impl ProcStat {
    /// [`ProcStat::cpu_ticks`] as time: `USER_HZ` is 100 on Linux.
    pub fn cpu_time(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.cpu_ticks * 10)
    }
}

/// Reads [`ProcStat`] of the calling thread from `/proc/thread-self/stat`.
pub fn thread_stat() -> Result<ProcStat, String> {
    stat_of("/proc/thread-self/stat")
}

/// Reads [`ProcStat`] of process `pid` (all its threads together) from `/proc/<pid>/stat`.
pub fn process_stat(pid: u32) -> Result<ProcStat, String> {
    stat_of(&format!("/proc/{pid}/stat"))
}

/// Reads [`ProcStat`] of each of a process's threads (`/proc/<pid>/task/*/stat`). A
/// thread that ends while they are read (a runtime's idle blocking thread) is left out.
pub fn process_threads(pid: u32) -> Result<Vec<ProcStat>, String> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {dir}: {e}"))?;
    let mut stats = Vec::new();
    for task in tasks {
        let path = task
            .map_err(|e| format!("cannot list {dir}: {e}"))?
            .path()
            .join("stat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        stats.push(
            parse_stat(&text).ok_or_else(|| format!("{}: unexpected format", path.display()))?,
        );
    }
    Ok(stats)
}

fn stat_of(path: &str) -> Result<ProcStat, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_stat(&text).ok_or_else(|| format!("{path}: unexpected format"))
}

/// Fields 14 and 15 (utime, stime), 19 (nice) and 41 (policy) of `proc_pid_stat(5)`. The
/// command name (field 2) may hold spaces and parentheses, so the count starts after its
/// last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3);
    Some(ProcStat {
        nice: field(19)?.parse().ok()?,
        policy: field(41)?.parse().ok()?,
        cpu_ticks: field(14)?.parse::<u64>().ok()? + field(15)?.parse::<u64>().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHED_OTHER: u32 = 0;

    #[test]
    fn parses_nice_policy_and_cpu_past_an_odd_command_name() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 -3 3 0 \
                    1000 2000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 3 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                nice: -3,
                policy: SCHED_BATCH,
                cpu_ticks: 8,
            })
        );
        assert_eq!(
            parse_stat(line).map(|s| s.cpu_time()),
            Some(std::time::Duration::from_millis(80))
        );
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn batch_keeps_the_nice_value_and_reaches_new_threads() {
        // On a thread of its own: the policy is per thread and the test runner's threads
        // must not change.
        std::thread::spawn(|| {
            // Started at a raised nice value (raising needs no privilege), as an operator
            // may start a node with `nice`.
            let nice = (thread_stat().expect("stat").nice + 3).min(19);
            let other = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
            let priority = priority_for(nice, other).expect("a priority for the nice value");
            thread_priority::set_thread_priority_and_policy(
                thread_priority::thread_native_id(),
                priority,
                other,
            )
            .expect("raise nice");
            let before = thread_stat().expect("stat");
            assert_eq!((before.nice, before.policy), (nice, SCHED_OTHER));
            apply(Scheduling::Inherit).expect("inherit");
            assert_eq!(thread_stat().expect("stat"), before);
            apply(Scheduling::Batch).expect("batch");
            let after = thread_stat().expect("stat");
            assert_eq!((after.nice, after.policy), (nice, SCHED_BATCH));
            let child = std::thread::spawn(|| thread_stat().expect("stat"))
                .join()
                .expect("child thread");
            assert_eq!(child, after, "a thread started afterwards inherits it");
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn every_nice_value_has_a_priority() {
        let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        for nice in -20..=19 {
            assert!(priority_for(nice, batch).is_some(), "nice {nice}");
        }
    }

    #[test]
    fn configuration_names() {
        assert_eq!("batch".parse(), Ok(Scheduling::Batch));
        assert_eq!("inherit".parse(), Ok(Scheduling::Inherit));
        assert!("fifo".parse::<Scheduling>().is_err());
        assert_eq!(Scheduling::default(), Scheduling::Batch);
    }
}
