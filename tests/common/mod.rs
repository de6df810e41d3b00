//! Helpers shared by the black-box tests: a private home and the real `maestra` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod http;
pub mod mcp;
pub mod mock;
pub mod mock_anthropic;
pub mod mock_embeddings;
pub mod pg;
pub mod server;
pub mod services_mock;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `backup VERB --to|--from PATH EXTRA...`: the argument list of a `maestra backup` command
/// (`create` writes to PATH, the others read from it).
pub fn backup_args<'a>(verb: &'a str, path: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let flag = if verb == "create" { "--to" } else { "--from" };
    [&["backup", verb, flag, path][..], extra].concat()
}

pub struct Home {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("m");
        Home {
            env: vec![("MAESTRA_HOME".into(), home.display().to_string())],
            dir,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("m")
    }

    pub fn with(mut self, k: &str, v: &str) -> Home {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Writes `toml` as the home's `maestra.toml`, with the modes `maestra serve` insists on
    /// (home 0700, file 0600).
    pub fn with_toml(self, toml: &str) -> Home {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(self.root()).unwrap();
        std::fs::set_permissions(self.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = self.root().join("maestra.toml");
        std::fs::write(&file, toml).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        self
    }

    /// Runs `maestra ARGS` with `stdin`, in a clean environment (no variable of the caller's
    /// leaks in, so a developer's own keys cannot change a result).
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self.command(args).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// `maestra ARGS` in this home's clean environment, its standard streams piped.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_maestra"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Like [`Home::run`], for a command that must exit by itself (a `serve` that refuses to
    /// start): killed, and the test failed, if it is still running after `limit`.
    pub fn run_within(&self, args: &[&str], stdin: &[u8], limit: std::time::Duration) -> Output {
        let mut child = self.command(args).spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let deadline = std::time::Instant::now() + limit;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "maestra {args:?} did not exit within {limit:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "maestra {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail with exactly one line on stderr; returns that line.
    pub fn fails(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "maestra {args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err:?}");
        err
    }
}

/// The Python with `cryptography` and `openai`, installed by `.ci/run` into `.venv`.
/// Missing is a failure, never a skip.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MAESTRA_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/test` (it creates the venv with cryptography and openai)",
        p.display()
    );
    p
}

pub fn run_python(code: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir`, read as bytes, for grepping a canary.
pub fn all_file_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}
