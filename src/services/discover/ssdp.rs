//! SSDP search (UPnP Device Architecture 2.0, §1.3): one M-SEARCH per search target to
//! 239.255.255.250:1900 with a TTL of one hop, and the unicast answers read as HTTP responses
//! with `httparse`. No SSDP crate is used: the one published (`ssdp-client`) reads answers with
//! its own string splitting, waits afresh after every answer (a steady stream of answers never
//! ends it) and, on Windows, connects its socket towards a public DNS server to pick an
//! interface.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc::Sender;
use tokio::time::Instant;
use url::{Host, Url};

use super::Seen;
use super::found::{Device, How};

/// The SSDP multicast group and port.
const SSDP_GROUP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)), 1900);

/// One hop: the search stays on the local link (UPnP's default of 2 would let a router
/// forward it).
const MULTICAST_TTL: u32 = 1;

/// What is searched for: Sonos players, Hue bridges (they answer as basic devices) and UPnP
/// media renderers.
pub const SEARCH_TARGETS: [&str; 3] = [
    "urn:schemas-upnp-org:device:ZonePlayer:1",
    "urn:schemas-upnp-org:device:basic:1",
    "urn:schemas-upnp-org:device:MediaRenderer:1",
];

/// The largest answer read: real ones are a few hundred bytes; a longer datagram is cut to
/// this and then fails to parse, which counts it as unreadable.
const MAX_ANSWER_BYTES: usize = 2048;

/// Headers an answer may carry; one with more is unreadable.
const MAX_HEADERS: usize = 32;

/// The longest `MX` asked for (seconds devices may wait before answering; UDA caps it at 5).
const MAX_MX_SECS: u64 = 5;

/// Searches for `window`, sending each answer's device to `tx`.
pub async fn search(window: Duration, tx: Sender<Seen>) {
    let deadline = Instant::now() + window;
    if let Err(e) = send_searches(window, deadline, &tx).await {
        let _ = tx
            .send(Seen::Problem(format!("SSDP: cannot search: {e}")))
            .await;
    }
}

async fn send_searches(
    window: Duration,
    deadline: Instant,
    tx: &Sender<Seen>,
) -> std::io::Result<()> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.set_multicast_ttl_v4(MULTICAST_TTL)?;
    // Devices answer within MX seconds; leave a second of the window to hear the last ones.
    let mx = window.as_secs().saturating_sub(1).clamp(1, MAX_MX_SECS);
    for st in SEARCH_TARGETS {
        let request = format!(
            "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\
             MX: {mx}\r\nST: {st}\r\n\r\n"
        );
        socket.send_to(request.as_bytes(), SSDP_GROUP).await?;
    }
    let mut buf = vec![0u8; MAX_ANSWER_BYTES];
    loop {
        let (n, from) = match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            Err(_) => return Ok(()),
            Ok(r) => r?,
        };
        let seen = answer(&buf[..n], from).map_or(Seen::Unreadable, Seen::Device);
        if tx.send(seen).await.is_err() {
            return Ok(());
        }
    }
}

/// The device an answer describes, or `None` for one that is not a well-formed `200 OK` with
/// an http `LOCATION`.
fn answer(bytes: &[u8], from: SocketAddr) -> Option<Device> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if !matches!(response.parse(bytes), Ok(httparse::Status::Complete(_)))
        || response.code != Some(200)
    {
        return None;
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let location = Url::parse(header("location")?)
        .ok()
        .filter(|u| u.scheme() == "http")?;
    let st = header("st").unwrap_or_default();
    let server = header("server").unwrap_or_default();
    let bridge_id = header("hue-bridgeid");
    let kind = if bridge_id.is_some() || server.contains("IpBridge") {
        "hue"
    } else if st.contains("ZonePlayer") || server.contains("Sonos") {
        "sonos"
    } else if st.contains("MediaRenderer") {
        "media_renderer"
    } else {
        "upnp"
    };
    let name = match bridge_id {
        Some(id) => format!("Hue bridge {id}"),
        // `uuid:DEVICE-UUID::urn:...`: the device's own part.
        None => header("usn")
            .unwrap_or_default()
            .split("::")
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    let answered = from.ip();
    let port = location.port_or_known_default().unwrap_or(80);
    let mut device = Device::new(kind, &name, answered, port, How::Ssdp);
    let same_host = match location.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4) == answered,
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6) == answered,
        _ => false,
    };
    if !same_host {
        device.not_writable.get_or_insert_with(|| {
            "its description URL names another host than the address that answered, so \
             nothing was fetched from it"
                .into()
        });
    } else if device.local {
        device.description_url = Some(location);
    }
    Some(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 1900)
    }

    #[test]
    fn reads_sonos_and_hue_answers() {
        let sonos = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age = 1800\r\nLOCATION: http://10.0.0.7:1400/xml/device_description.xml\r\nSERVER: Linux UPnP/1.0 Sonos/70.3-35220 (ZPS9)\r\nST: urn:schemas-upnp-org:device:ZonePlayer:1\r\nUSN: uuid:RINCON_000E58A0123401400::urn:schemas-upnp-org:device:ZonePlayer:1\r\n\r\n";
        let d = answer(sonos, from("10.0.0.7")).unwrap();
        assert_eq!(
            (d.kind, d.port, d.name.as_str()),
            ("sonos", 1400, "uuid:RINCON_000E58A0123401400")
        );
        assert!(d.description_url.is_some() && d.not_writable.is_none());

        let hue = b"HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.8:80/description.xml\r\nSERVER: Hue/1.0 UPnP/1.0 IpBridge/1.65.0\r\nhue-bridgeid: 001788FFFE2A3B4C\r\nST: urn:schemas-upnp-org:device:basic:1\r\n\r\n";
        let d = answer(hue, from("10.0.0.8")).unwrap();
        assert_eq!(
            (d.kind, d.name.as_str()),
            ("hue", "Hue bridge 001788FFFE2A3B4C")
        );
    }

    #[test]
    fn other_hosts_public_addresses_and_garbage() {
        let elsewhere =
            b"HTTP/1.1 200 OK\r\nLOCATION: http://10.9.9.9/d.xml\r\nST: upnp:rootdevice\r\n\r\n";
        let d = answer(elsewhere, from("10.0.0.8")).unwrap();
        assert!(d.description_url.is_none() && d.not_writable.is_some());
        let public = b"HTTP/1.1 200 OK\r\nLOCATION: http://203.0.113.8/d.xml\r\n\r\n";
        let d = answer(public, from("203.0.113.8")).unwrap();
        assert!(!d.local && d.description_url.is_none() && d.not_writable.is_some());
        for bad in [
            &b"NOTIFY * HTTP/1.1\r\nLOCATION: http://10.0.0.8/\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\nLOCATION: http://10.0.0.8/\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nLOCATION: file:///etc/passwd\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.8/",
            b"\xff\xfe garbage",
        ] {
            assert!(answer(bad, from("10.0.0.8")).is_none(), "{bad:?}");
        }
    }
}
