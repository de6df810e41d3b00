//! mDNS/DNS-SD browsing (RFC 6762/6763) with `mdns-sd`: queries go to 224.0.0.251 and ff02::fb
//! on the local link only, and the answers (PTR, SRV, TXT, A/AAAA) are read by the crate.

use std::net::IpAddr;
use std::time::Duration;

use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent};
use tokio::sync::mpsc::Sender;
use tokio::time::Instant;

use super::Seen;
use super::found::{Device, How};
use super::kinds::{KINDS, KindDef};
use crate::privsec::guard::is_local_addr;

/// How long the daemon may take to stop once browsing is over (a hang guard: it stops within
/// one poll).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Browses every kind's DNS-SD type for `window`, sending each resolved instance to `tx`.
pub async fn browse(window: Duration, tx: Sender<Seen>) {
    let daemon = match ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            let _ = tx
                .send(Seen::Problem(format!("mDNS: cannot start: {e}")))
                .await;
            return;
        }
    };
    let deadline = Instant::now() + window;
    let mut browsers = Vec::new();
    for kind in KINDS.iter() {
        let Some(ty) = kind.mdns_type else { continue };
        match daemon.browse(ty) {
            Ok(rx) => browsers.push(watch(kind, ty, rx, deadline, tx.clone())),
            Err(e) => {
                let _ = tx
                    .send(Seen::Problem(format!("mDNS: cannot browse {ty}: {e}")))
                    .await;
            }
        }
    }
    futures_util::future::join_all(browsers).await;
    if let Ok(status) = daemon.shutdown() {
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, status.recv_async()).await;
    }
}

/// One type's events until `deadline`.
async fn watch(
    kind: &'static KindDef,
    ty: &'static str,
    rx: mdns_sd::Receiver<ServiceEvent>,
    deadline: Instant,
    tx: Sender<Seen>,
) {
    loop {
        match tokio::time::timeout_at(deadline, rx.recv_async()).await {
            Ok(Ok(ServiceEvent::ServiceResolved(found))) => {
                let seen = device(kind, ty, &found).map_or(Seen::Unreadable, Seen::Device);
                if tx.send(seen).await.is_err() {
                    return;
                }
            }
            Ok(Ok(_)) => {}
            // The deadline, or the daemon gone.
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// The device an instance stands for: its instance name and the address a base URL would
/// name (IPv4 before IPv6, a local one before a public one); `None` without an address.
fn device(kind: &'static KindDef, ty: &str, found: &ResolvedService) -> Option<Device> {
    let instance = found
        .fullname
        .strip_suffix(ty)
        .map(|n| n.strip_suffix('.').unwrap_or(n))
        .unwrap_or(&found.fullname);
    let address = found
        .addresses
        .iter()
        .map(|a| a.to_ip_addr())
        .min_by_key(|a| preference(*a))?;
    let mut d = Device::new(kind.kind, instance, address, found.port, How::Mdns);
    if let IpAddr::V6(v6) = address
        && d.not_writable.is_none()
        && (v6.segments()[0] & 0xffc0) == 0xfe80
    {
        d.not_writable = Some(
            "it announced only a link-local IPv6 address, which a base_url cannot name \
             without its interface"
                .into(),
        );
    }
    Some(d)
}

/// Lower is preferred: local IPv4, local IPv6 other than link-local, link-local IPv6, then
/// public addresses.
fn preference(a: IpAddr) -> u8 {
    let link_local_v6 = matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
    match (is_local_addr(a), a.is_ipv4(), link_local_v6) {
        (true, true, _) => 0,
        (true, false, false) => 1,
        (true, false, true) => 2,
        (false, true, _) => 3,
        (false, false, _) => 4,
    }
}
