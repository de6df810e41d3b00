//! The Debian package, built with `cargo deb` (cargo-deb, installed by `scripts/test`) from
//! the `[package.metadata.deb]` table and `packaging/debian/`, and checked without touching
//! the machine: read with `dpkg-deb --info/--contents`, extracted into a temporary root where
//! the packaged `maestra --version` runs, its unit checked by `systemd-analyze verify`.
//!
//! It packages the binary this test run built, stripped as the release profile strips
//! (`--no-build`, from a private target directory), so the check costs no second build: what
//! is checked is the package's making and content, which are the same for a release build
//! (`cargo deb` builds one).
//!
//! A missing `cargo deb`, `dpkg-deb` or `systemd-analyze` fails this test, never skips it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}); `bash scripts/test` installs it"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package from this run's binary; its path.
fn build(dir: &Path) -> std::path::PathBuf {
    // cargo-deb takes binaries from `target/release/` of the target directory it is given.
    let release = dir.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    let binary = release.join("maestra");
    std::fs::copy(env!("CARGO_BIN_EXE_maestra"), &binary).unwrap();
    // What the release profile does (`strip = "symbols"`), so the package is its real size.
    run(Command::new("strip").arg(&binary));
    let deb = dir.join("maestra.deb");
    run(Command::new("cargo")
        .args(["deb", "--no-build", "--fast", "--output"])
        .arg(&deb)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", dir.join("target")));
    deb
}

#[test]
fn the_debian_package_holds_the_binary_the_hardened_unit_and_its_account() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());

    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&deb)));
    assert!(info.contains("Package: maestra"), "{info}");
    assert!(
        info.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    assert!(info.contains("Section: net"), "{info}");
    assert!(
        info.contains("Depends:") && info.contains("systemd"),
        "{info}"
    );

    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in [
        "./usr/bin/maestra",
        "/systemd/system/maestra.service",
        "./usr/lib/sysusers.d/maestra.conf",
        "./usr/share/doc/maestra/README.md",
        "./usr/share/doc/maestra/copyright",
    ] {
        assert!(contents.contains(path), "{path} in\n{contents}");
    }

    // The maintainer scripts create the account and register the unit, without enabling or
    // starting it: a privacy service starts when its person says so.
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers"), "{postinst}");
    assert!(postinst.contains("deb-systemd-helper"), "{postinst}");
    assert!(
        !postinst.contains("systemctl --system start")
            && !postinst.contains("invoke-rc.d maestra start"),
        "{postinst}"
    );

    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let version = text(&run(
        Command::new(root.join("usr/bin/maestra")).arg("--version")
    ));
    assert_eq!(
        version.trim(),
        format!("maestra {}", env!("CARGO_PKG_VERSION"))
    );

    // The unit as packaged: its command is the packaged binary, and `systemd-analyze verify`
    // finds nothing wrong with it once that path points into the extracted root (verify
    // checks the binary exists, and this test installs nothing).
    let unit_path = ["lib", "usr/lib"]
        .iter()
        .map(|p| root.join(p).join("systemd/system/maestra.service"))
        .find(|p| p.exists())
        .expect("the unit in the package");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert!(
        unit.lines()
            .any(|l| l == "ExecStart=/usr/bin/maestra serve"),
        "{unit}"
    );
    let checked = dir.path().join("maestra.service");
    let exec = format!("ExecStart={} serve", root.join("usr/bin/maestra").display());
    std::fs::write(
        &checked,
        unit.replace("ExecStart=/usr/bin/maestra serve", &exec),
    )
    .unwrap();
    let verify = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&checked));
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");

    let sysusers = std::fs::read_to_string(root.join("usr/lib/sysusers.d/maestra.conf")).unwrap();
    assert!(
        sysusers.lines().any(|l| l.starts_with("u maestra ")),
        "{sysusers}"
    );
}
