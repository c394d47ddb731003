//! The `-v` debug log on stderr: what was read and asked, and how long it took.

use std::io::Write;
use std::time::Instant;

/// Writes debug lines when `-v` is given; costs nothing otherwise.
pub struct Log {
    level: u8,
    start: Instant,
}

impl Log {
    pub fn new(level: Option<u8>) -> Log {
        Log {
            level: level.unwrap_or(0),
            start: Instant::now(),
        }
    }

    /// Writes `message()` at `level` (1: requests and reads; 2: details).
    pub fn debug(&self, err: &mut dyn Write, level: u8, message: impl FnOnce() -> String) {
        if self.level >= level {
            let ms = self.start.elapsed().as_millis();
            let _ = writeln!(err, "[{ms:>6}ms] {}", message());
        }
    }
}
