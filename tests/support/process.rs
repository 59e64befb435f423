//! The real `grader` binary as a child process: `grader admin` and a running `grader serve`.
//! Each test builds its own base [`Command`] (its environment: database, config, keys), and
//! these helpers do the rest the same way everywhere.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_grader");

/// Runs `grader admin ARGS` with `base`'s environment and returns its trimmed stdout; fails
/// the test with the command's stderr when it does not succeed.
pub fn admin(mut base: Command, args: &[&str]) -> String {
    let out = base
        .arg("admin")
        .args(args)
        .output()
        .expect("run grader admin");
    assert!(
        out.status.success(),
        "grader admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A running `grader serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://ADDR`, from the `listening on http://ADDR` line it prints.
    pub base: String,
    pub pid: u32,
}

impl Server {
    /// Starts `base serve EXTRA_ARGS` on a free loopback port and waits (blocking; call it off
    /// the async runtime) until it prints `listening on http://ADDR`.
    pub fn start(mut base: Command, extra_args: &[&str]) -> Server {
        let mut child = base
            .arg("serve")
            .args(extra_args)
            .env("GRADER_ADDR", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn grader serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.to_string());
                    }
                }
                // Keep draining so the server never blocks on a full pipe.
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("grader serve printed `listening on http://ADDR`");
        let pid = child.id();
        Server { child, base, pid }
    }

    /// SIGTERM and wait for a clean exit (graceful: in-flight gradings finish or are released).
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "grader serve exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "grader serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (`Child::kill`): no shutdown code runs, leases stay until they expire.
    pub fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("wait");
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
