//! The audit log through its public API: group commit under concurrency, and `verify` naming
//! every kind of tampering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use maestra::config::AuditConfig;
use maestra::privsec::audit::{self, AuditLog, Category, ChainKey, Event, Filter, Outcome};

fn cfg(dir: &Path) -> AuditConfig {
    AuditConfig {
        path: dir.join("logs").join("audit.log"),
        retention_days: 90,
        fail_closed: true,
        queue_capacity: 1024,
    }
}

fn key() -> ChainKey {
    ChainKey::from_bytes(&[42; 32])
}

async fn write(cfg: &AuditConfig, n: usize, user: &str) {
    let log = AuditLog::open(cfg, key()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let log = log.clone();
        let user = user.to_string();
        tasks.push(tokio::spawn(async move {
            log.append(
                Event::new(Category::Smarthome, "hue", "lights.set", Outcome::Success)
                    .user(user)
                    .detail("i", i),
            )
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    log.close().await;
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn put_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn problem(cfg: &AuditConfig) -> String {
    let r = audit::verify(&cfg.path, &key()).unwrap();
    r.problem.map(|p| p.to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_one_chain() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 300, "u1").await;
    let r = audit::verify(&c.path, &key()).unwrap();
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_eq!(r.entries, 300);
    let entries = audit::query(&c.path, &Filter::default()).unwrap();
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=300).rev().collect::<Vec<_>>(),
        "newest first, no gaps"
    );
}

#[tokio::test]
async fn two_writers_on_one_file_share_the_chain() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    let a = AuditLog::open(&c, key()).unwrap();
    let b = AuditLog::open(&c, key()).unwrap();
    for i in 0..20 {
        let log = if i % 2 == 0 { &a } else { &b };
        log.append(Event::new(Category::Admin, "vault", "x", Outcome::Success))
            .await
            .unwrap();
    }
    a.close().await;
    b.close().await;
    assert_eq!(problem(&c), "");
}

#[tokio::test]
async fn verify_names_a_modified_line() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 10, "alice").await;
    let mut l = lines(&c.path);
    l[4] = l[4].replace("alice", "mallory");
    put_lines(&c.path, &l);
    let p = problem(&c);
    assert!(p.contains("line 5") && p.contains("changed"), "{p}");
}

#[tokio::test]
async fn verify_names_a_deleted_line() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 10, "alice").await;
    let mut l = lines(&c.path);
    l.remove(3);
    put_lines(&c.path, &l);
    let p = problem(&c);
    assert!(p.contains("line 4") && p.contains("missing"), "{p}");
}

#[tokio::test]
async fn verify_names_an_inserted_line() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 10, "alice").await;
    let mut l = lines(&c.path);
    // A replayed authentic line, and a forged one.
    let copy = l[2].clone();
    l.insert(6, copy);
    put_lines(&c.path, &l);
    let p = problem(&c);
    assert!(p.contains("line 7") && p.contains("inserted"), "{p}");

    let mut l = lines(&c.path);
    l.remove(6);
    l.insert(
        6,
        r#"{"ts":"2026-01-01T00:00:00Z","seq":7,"forged":true}"#.into(),
    );
    put_lines(&c.path, &l);
    let p = problem(&c);
    assert!(p.contains("line 7"), "{p}");
}

#[tokio::test]
async fn verify_detects_a_cut_tail() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 10, "alice").await;
    let mut l = lines(&c.path);
    l.truncate(7);
    put_lines(&c.path, &l);
    let p = problem(&c);
    assert!(p.contains("tail was cut") && p.contains("seq 10"), "{p}");

    // A line cut mid-way.
    let text = std::fs::read_to_string(&c.path).unwrap();
    std::fs::write(&c.path, &text[..text.len() - 20]).unwrap();
    let p = problem(&c);
    assert!(p.contains("line 7") && p.contains("incomplete"), "{p}");
}

#[tokio::test]
async fn writer_continues_after_a_cut_so_the_gap_stays_visible() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 10, "alice").await;
    let mut l = lines(&c.path);
    l.truncate(7);
    put_lines(&c.path, &l);
    write(&c, 1, "alice").await;
    let p = problem(&c);
    assert!(p.contains("line 8") && p.contains("missing"), "{p}");
}

#[tokio::test]
async fn chain_continues_across_rotation_and_gz_is_queried_and_verified() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 5, "old").await;
    assert!(audit::rotate(&c.path, key()).unwrap());
    write(&c, 5, "new").await;
    let r = audit::verify(&c.path, &key()).unwrap();
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_eq!((r.entries, r.files), (10, 2));

    let all = audit::query(&c.path, &Filter::default()).unwrap();
    assert_eq!(all.first().unwrap().seq, 10);
    assert_eq!(all.last().unwrap().seq, 1);
    let old = audit::query(
        &c.path,
        &Filter {
            user: Some("old".into()),
            category: Some(Category::Smarthome),
            limit: Some(2),
            ..Filter::default()
        },
    )
    .unwrap();
    assert_eq!(old.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 4]);

    // Removing the rotated day breaks the chain at the live file's first line.
    let gz: Vec<PathBuf> = std::fs::read_dir(c.path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".log.gz"))
        .collect();
    assert_eq!(gz.len(), 1);
    std::fs::remove_file(&gz[0]).unwrap();
    let p = problem(&c);
    assert!(
        p.contains("audit.log line 1") && p.contains("missing"),
        "{p}"
    );
}

#[tokio::test]
async fn prune_keeps_the_rest_verifiable_through_the_anchor() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    let dir = c.path.parent().unwrap().to_path_buf();
    write(&c, 3, "a").await;
    audit::rotate(&c.path, key()).unwrap();
    write(&c, 3, "b").await;
    audit::rotate(&c.path, key()).unwrap();
    write(&c, 3, "c").await;
    // Give the two rotated days old dates in their names, as if written long ago.
    let mut gz: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".log.gz"))
        .collect();
    gz.sort_by_key(|p| p.to_string_lossy().len()); // audit.DAY.log.gz before audit.DAY.1.log.gz
    std::fs::rename(&gz[0], dir.join("audit.2020-01-01.log.gz")).unwrap();
    std::fs::rename(&gz[1], dir.join("audit.2026-11-01.log.gz")).unwrap();

    let today = time::macros::date!(2026 - 11 - 22);
    let removed = audit::prune(&c.path, &key(), 90, today).unwrap();
    assert_eq!(removed, vec![dir.join("audit.2020-01-01.log.gz")]);
    let r = audit::verify(&c.path, &key()).unwrap();
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_eq!(r.entries, 6);

    std::fs::remove_file(dir.join("audit.anchor")).unwrap();
    assert!(problem(&c).contains("missing"));
}

#[tokio::test]
async fn a_log_made_with_another_key_does_not_verify() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 3, "a").await;
    let r = audit::verify(&c.path, &ChainKey::from_bytes(&[1; 32])).unwrap();
    assert!(r.problem.unwrap().to_string().contains("line 1"));
}

fn allowed(cfg: &AuditConfig) -> audit::Report {
    let options = audit::VerifyOptions {
        allow_missing_head: true,
    };
    audit::verify_with(&cfg.path, &key(), options).unwrap()
}

fn head(cfg: &AuditConfig) -> PathBuf {
    cfg.path.with_extension("head")
}

/// The red-team case: the tail cut and the head deleted with it. A missing head is no
/// evidence of integrity: strict verify fails; the allowance passes but says so.
#[tokio::test]
async fn a_cut_tail_with_its_head_deleted_fails_unless_allowed() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 10, "alice").await;
    let mut l = lines(&c.path);
    l.truncate(7);
    put_lines(&c.path, &l);
    std::fs::remove_file(head(&c)).unwrap();
    let p = problem(&c);
    assert!(p.contains("audit.head") && p.contains("missing"), "{p}");
    let r = allowed(&c);
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert!(r.head_warning.unwrap().contains("cut tail"));

    // A forged or damaged head is no better.
    std::fs::write(head(&c), "v1 head 00000000000000000007 ab cd\n").unwrap();
    let p = problem(&c);
    assert!(p.contains("not authentic"), "{p}");
}

/// Writing on after the head was deleted must not make the log verify again: the writer
/// records the loss inside the chain, where it cannot be removed without breaking it.
#[tokio::test]
async fn writing_after_the_head_was_deleted_keeps_the_loss_visible() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 10, "alice").await;
    let mut l = lines(&c.path);
    l.truncate(7);
    put_lines(&c.path, &l);
    std::fs::remove_file(head(&c)).unwrap();
    write(&c, 2, "alice").await;
    assert!(head(&c).exists(), "the head is written again");
    let p = problem(&c);
    assert!(
        p.contains("audit.log line 8") && p.contains("head record was gone"),
        "{p}"
    );
    let r = allowed(&c);
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_eq!(r.entries, 10, "7 kept, the loss record, 2 new");
    assert!(r.head_warning.is_some());
}

/// Rotation leaves the live file empty: a writer that then finds no head continues the chain
/// from the newest rotated day (no repeated seq), and records the loss.
#[tokio::test]
async fn a_deleted_head_after_rotation_continues_the_chain_and_is_recorded() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    write(&c, 5, "old").await;
    assert!(audit::rotate(&c.path, key()).unwrap());
    assert_eq!(problem(&c), "");
    std::fs::remove_file(head(&c)).unwrap();
    assert!(problem(&c).contains("missing"));
    write(&c, 3, "new").await;
    let p = problem(&c);
    assert!(
        p.contains("line 1") && p.contains("head record was gone"),
        "{p}"
    );
    let r = allowed(&c);
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert_eq!((r.entries, r.files), (9, 2));
}

/// A fresh log and an untouched one verify strictly; no head is needed while there is no
/// entry at all.
#[tokio::test]
async fn an_untouched_log_verifies_strictly() {
    let t = tempfile::tempdir().unwrap();
    let c = cfg(t.path());
    assert_eq!(problem(&c), "");
    let log = AuditLog::open(&c, key()).unwrap();
    log.close().await;
    assert_eq!(problem(&c), "");
    write(&c, 3, "a").await;
    write(&c, 3, "b").await;
    let r = audit::verify(&c.path, &key()).unwrap();
    assert!(r.problem.is_none() && r.head_warning.is_none(), "{r:?}");
}
