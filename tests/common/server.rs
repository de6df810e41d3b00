//! `maestra serve` as a child process on 127.0.0.1 port 0, its output collected so a full
//! pipe never blocks it and tests can grep it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Home;

pub struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

/// The environment pointing every provider at the mock upstream.
pub fn upstream_env(home: Home, mock: SocketAddr) -> Home {
    home.with("MAESTRA_LOCAL_MODEL_URL", &format!("http://{mock}/v1"))
        .with("MAESTRA_LOCAL_MODEL", "llama3.2,qwen2.5")
        .with("MAESTRA_OPENAI_BASE_URL", &format!("http://{mock}/v1"))
        .with("MAESTRA_ANTHROPIC_BASE_URL", &format!("http://{mock}/v1"))
        .with("MAESTRA_UPSTREAM_TIMEOUT", "2")
}

impl Server {
    pub fn start(home: &Home) -> Server {
        Server::start_wrapped(home, &[])
    }

    /// `maestra serve` started by `wrapper` (a command that ends by running the arguments it
    /// is given, such as `unshare ... sh -c '...; exec "$@"' sh`), or directly when empty.
    pub fn start_wrapped(home: &Home, wrapper: &[&str]) -> Server {
        let maestra = env!("CARGO_BIN_EXE_maestra");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(maestra),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(maestra);
                c
            }
        };
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.dir.path())
            .envs(home.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(home.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let err_buf = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                err_buf
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let out_pipe = child.stdout.take().unwrap();
        let out_buf = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                let listening = line
                    .strip_prefix("maestra listening on http://")
                    .map(|a| ("http", a))
                    .or_else(|| {
                        line.strip_prefix("maestra listening on https://")
                            .map(|a| ("https", a))
                    });
                if let Some((scheme, addr)) = listening {
                    let _ = tx.send((scheme, addr.parse::<SocketAddr>().unwrap()));
                }
                out_buf.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let (scheme, addr) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("maestra serve did not start: {}", stderr.lock().unwrap());
            }
        };
        Server {
            child: Some(child),
            addr,
            scheme,
            stdout,
            stderr,
        }
    }

    /// `http://127.0.0.1:PORT/path`, or `https://localhost:PORT/path` when serving TLS (the
    /// name the tests' certificates are made for).
    pub fn url(&self, path: &str) -> String {
        if self.scheme == "https" {
            format!("https://localhost:{}{}", self.addr.port(), path)
        } else {
            format!("http://{}{}", self.addr, path)
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns everything the server printed.
    pub fn stop(&mut self) -> String {
        self.terminate();
        self.wait_stopped()
    }

    /// Sends SIGTERM and returns at once: the server is stopping.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let pid = rustix::process::Pid::from_child(child);
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        }
    }

    /// Whether the process is still there (a stopping server that has not exited yet).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Waits for the exit `terminate` asked for, which must be clean; returns everything the
    /// server printed.
    pub fn wait_stopped(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        let status = child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(status.success(), "serve exited with {status}");
        self.output()
    }

    pub fn output(&self) -> String {
        format!(
            "{}{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The audit log's model-call entries (`llm`) and its whole text, read after stopping the
/// server (which flushes them).
pub fn llm_entries(server: &mut Server, home: &Home) -> (Vec<serde_json::Value>, String) {
    server.stop();
    let text = std::fs::read_to_string(home.root().join("logs/audit.log")).unwrap();
    let calls = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["category"] == "llm")
        .collect();
    (calls, text)
}
