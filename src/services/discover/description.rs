//! A UPnP device description (an XML document at the SSDP answer's `LOCATION`), fetched for
//! its `friendlyName` only from the address that answered, through egress in local-only mode.

use std::time::Duration;

use futures_util::StreamExt;
use quick_xml::events::Event;
use url::Url;

use super::found::{Device, How};
use crate::egress::Egress;

/// The most descriptions fetched in one run: a home has a few UPnP devices; past this many the
/// devices keep the names their answers gave.
pub const MAX_DESCRIPTIONS: usize = 32;

/// Descriptions fetched at once.
const PARALLEL: usize = 4;

/// How long one description may take, connection included: a device on the local network
/// answers in milliseconds; one that does not is named by its answer instead.
const DESCRIPTION_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest description read: real ones are a few KiB.
const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;

/// The name egress knows these requests by: `ssdp`, a local entry of the guard's catalog.
const SERVICE: &str = "ssdp";

/// Names the SSDP-found devices from their descriptions (at most [`MAX_DESCRIPTIONS`]).
pub async fn name_from_descriptions(egress: &Egress, devices: &mut [Device]) {
    let wanted: Vec<(usize, Url)> = devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.found_by.contains(&How::Ssdp))
        .filter_map(|(i, d)| Some((i, d.description_url.clone()?)))
        .take(MAX_DESCRIPTIONS)
        .collect();
    let names: Vec<(usize, Option<String>)> = futures_util::stream::iter(wanted)
        .map(|(i, url)| async move { (i, friendly_name(egress, url).await) })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    for (i, name) in names {
        if let Some(name) = name
            .map(|n| super::clean::clean_name(&n))
            .filter(|n| !n.is_empty())
        {
            devices[i].name = name;
        }
    }
}

/// The description's first `friendlyName`, or `None` when it cannot be had.
async fn friendly_name(egress: &Egress, url: Url) -> Option<String> {
    let body = tokio::time::timeout(DESCRIPTION_TIMEOUT, fetch(egress, url))
        .await
        .ok()??;
    parse_friendly_name(&body)
}

async fn fetch(egress: &Egress, url: Url) -> Option<Vec<u8>> {
    let request = egress.request(reqwest::Method::GET, url);
    let mut response = egress.send(SERVICE, request).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > MAX_DESCRIPTION_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// The text of the first `friendlyName` element (entities resolved), if any.
fn parse_friendly_name(xml: &[u8]) -> Option<String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut inside = false;
    let mut name = String::new();
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) if e.local_name().as_ref() == b"friendlyName" => inside = true,
            Event::Text(t) if inside => name.push_str(&t.decode().ok()?),
            Event::GeneralRef(r) if inside => {
                let text = r.decode().ok()?;
                match r.resolve_char_ref().ok()? {
                    Some(c) => name.push(c),
                    None => name.push_str(quick_xml::escape::resolve_predefined_entity(&text)?),
                }
            }
            Event::End(_) if inside => return Some(name),
            Event::Eof => return None,
            _ => {}
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_friendly_name() {
        let xml = br#"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceType>urn:schemas-upnp-org:device:ZonePlayer:1</deviceType><friendlyName>Kitchen &amp; Den &#x2014; Sonos</friendlyName></device></root>"#;
        assert_eq!(
            parse_friendly_name(xml).as_deref(),
            Some("Kitchen & Den \u{2014} Sonos")
        );
        assert_eq!(parse_friendly_name(b"<root><device/></root>"), None);
        assert_eq!(parse_friendly_name(b"<root><friendlyName>x"), None);
    }
}
