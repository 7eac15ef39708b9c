//! Helpers shared by native-demo's integration tests: reading a child process's pipes on
//! background threads, so a test can wait for a stdout line with a timeout and still show the
//! process's stderr when it fails.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Read};
use std::process::{ChildStderr, ChildStdout};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

/// Sends each stdout line to the returned channel until the pipe closes (or nobody listens).
pub fn stdout_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Appends everything written to stderr to the returned text, as it arrives (lossy UTF-8).
pub fn collect_stderr(mut stderr: ChildStderr) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}
