//! Wall-clock time behind a trait, so the regulation's time limits can be tested with an
//! injected clock instead of waiting.

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that stands still at the time written in a file, for testing the regulation's
/// time limits with the real binaries (`[testing] clock_file` in the config). `NAME clock
/// set` and `NAME clock advance` write the file; until it exists, system time is used.
#[derive(Debug)]
pub struct FileClock {
    path: std::path::PathBuf,
}

impl FileClock {
    pub fn new(path: std::path::PathBuf) -> Self {
        FileClock { path }
    }

    /// The time in the file, if there is one.
    pub fn read(path: &std::path::Path) -> Result<Option<i64>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => chrono::DateTime::parse_from_rfc3339(text.trim())
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|e| format!("clock file {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("clock file {}: {e}", path.display())),
        }
    }

    /// Writes `at_ms` to the file atomically, as RFC 3339 in China Standard Time.
    pub fn write(path: &std::path::Path, at_ms: i64) -> Result<(), String> {
        use chrono::TimeZone;
        let t = crate::calendar::china()
            .timestamp_millis_opt(at_ms)
            .single()
            .ok_or_else(|| format!("time {at_ms} ms is out of range"))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", t.to_rfc3339()))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("clock file {}: {e}", path.display()))
    }
}

impl Clock for FileClock {
    fn now_ms(&self) -> i64 {
        match FileClock::read(&self.path) {
            Ok(Some(ms)) => ms,
            Ok(None) => SystemClock.now_ms(),
            Err(e) => {
                // The CLI writes this file atomically; a bad one is a test bug. Say so and
                // keep time moving rather than stop the node.
                tracing::error!(error = %e, "unreadable clock file; using system time");
                SystemClock.now_ms()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_clock_stands_still_where_it_is_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clock");
        let clock = FileClock::new(path.clone());
        let before = SystemClock.now_ms();
        assert!(clock.now_ms() >= before, "no file: system time");
        FileClock::write(&path, 1_790_000_000_123).expect("write");
        assert_eq!(clock.now_ms(), 1_790_000_000_123);
        assert_eq!(clock.now_ms(), 1_790_000_000_123);
        std::fs::write(&path, "garbage").expect("write");
        assert!(FileClock::read(&path).is_err());
    }
}
