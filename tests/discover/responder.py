"""The devices of tests/discover.rs, run inside the responder's network namespace.

mDNS: the `zeroconf` package (what Home Assistant itself uses) registers a Hue bridge, a Sonos
player and a Home Assistant instance at --address, a printer whose name is HTML-escaped markup
(MARKUP_NAME: it must reach the privacy center's page as the same text, never as markup), and a
second Hue bridge whose address record is the public --public address. A hostile announcer sends, with zeroconf's own DNS writer
(which, unlike its registration, does not refuse such names), a Sonos instance whose name
holds a terminal escape, markup and a bidirectional override, and beside it malformed answers
(a compression pointer to itself, a record longer than its packet, a truncated packet, bytes
that are no DNS at all): discovery must go on finding the rest.

SSDP: a minimal UPnP responder (UPnP Device Architecture 2.0, section 1.3): it joins
239.255.255.250:1900 and answers each M-SEARCH for the Sonos ZonePlayer target from --address
(LOCATION: its device description, served over HTTP on --address:1400) and, from the public
address, a Hue bridge answer whose LOCATION names that public address. With --flood N it also
answers every M-SEARCH with N answers for N different devices.

An HTTP server on --address:8123 stands for Home Assistant's API: GET /api/ answers 200
{"message": "API running."} to the bearer token --ha-token, and 401 to anything else, so the
test sees the services proxy reach it at the written address with the vault's token.

Prints "ready" once everything is registered; runs until killed.
"""

import argparse
import http.server
import socket
import struct
import sys
import threading
import time

from zeroconf import DNSAddress, DNSPointer, DNSService, DNSText, ServiceInfo, Zeroconf, const
from zeroconf._protocol.outgoing import DNSOutgoing

HOSTILE_NAME = "Living\x1b[31m <b>Room</b>\u202e evil"
# Entities and quotes survive the name cleaning (angle brackets do not): a page that put a name
# in innerHTML would show `<img ...> & "Den"` instead of this text.
MARKUP_NAME = 'Office &lt;img src=x&gt; &amp; "Den"'

DESCRIPTION = """<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
 <specVersion><major>1</major><minor>0</minor></specVersion>
 <device>
  <deviceType>urn:schemas-upnp-org:device:ZonePlayer:1</deviceType>
  <friendlyName>Kitchen &lt;script&gt;alert(1)&lt;/script&gt; Sonos</friendlyName>
  <manufacturer>Sonos, Inc.</manufacturer>
  <modelName>Sonos One</modelName>
  <UDN>uuid:RINCON_TEST000000001400</UDN>
 </device>
</root>
"""


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--flood", type=int, default=0)
    p.add_argument("--ha-token", default="")
    return p.parse_args()


def register_mdns(address, public):
    zc = Zeroconf(interfaces=[address])
    a = socket.inet_aton(address)
    services = [
        ("_hue._tcp.local.", "Hue Bridge - 2A3B4C", [a], 443, "hue-2a3b4c.local.", {"bridgeid": "001788fffe2a3b4c"}),
        ("_sonos._tcp.local.", "Sonos-Den", [a], 1443, "sonos-den.local.", {"info": "/api/v1/players/local/info"}),
        ("_home-assistant._tcp.local.", "Home", [a], 8123, "homeassistant.local.", {"version": "2026.11.0"}),
        ("_ipp._tcp.local.", MARKUP_NAME, [a], 631, "office-printer.local.", {"rp": "ipp/print"}),
        ("_hue._tcp.local.", "Far Bridge", [socket.inet_aton(public)], 443, "far-bridge.local.", {}),
    ]
    for ty, name, addresses, port, server, props in services:
        zc.register_service(ServiceInfo(ty, f"{name}.{ty}", addresses=addresses, port=port,
                                        server=server, properties=props))
    return zc


# Malformed mDNS answers, sent beside the hostile one (with half of it too): a name that is a
# compression pointer to itself, a record whose length runs past the packet, and no DNS at all.
MALFORMED = [
    struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c" + struct.pack("!HHIH", 12, 1, 120, 2)
    + b"\xc0\x0c",
    struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + b"\x05sonos\x00" + struct.pack("!HHIH", 12, 1, 120, 4000)
    + b"\x00" * 8,
    b"\xff" * 40,
]


def announce_hostile(address):
    """An unsolicited answer, every half second, for a Sonos instance with a hostile name."""
    ty = "_sonos._tcp.local."
    full = f"{HOSTILE_NAME}.{ty}"
    host = "hostile-sonos.local."
    ttl = 120
    out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
    out.add_answer_at_time(DNSPointer(ty, const._TYPE_PTR, const._CLASS_IN, ttl, full), 0)
    out.add_answer_at_time(DNSService(full, const._TYPE_SRV, const._CLASS_IN | const._CLASS_UNIQUE,
                                      ttl, 0, 0, 1500, host), 0)
    out.add_answer_at_time(DNSText(full, const._TYPE_TXT, const._CLASS_IN | const._CLASS_UNIQUE,
                                   ttl, b"\x00"), 0)
    out.add_answer_at_time(DNSAddress(host, const._TYPE_A, const._CLASS_IN | const._CLASS_UNIQUE,
                                      ttl, socket.inet_aton(address)), 0)
    packet = out.packets()[0]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # From port 5353, as RFC 6762 section 6 requires of a multicast response (a browser ignores
    # others); bound to the address, not the wildcard, so it gets no copy of what arrives.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((address, 5353))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    while True:
        s.sendto(packet, ("224.0.0.251", 5353))
        for bad in MALFORMED + [packet[: len(packet) // 2]]:
            s.sendto(bad, ("224.0.0.251", 5353))
        time.sleep(0.5)


def ssdp_answer(location, st, usn, server, extra=""):
    return (
        "HTTP/1.1 200 OK\r\n"
        "CACHE-CONTROL: max-age = 1800\r\n"
        "EXT:\r\n"
        f"LOCATION: {location}\r\n"
        f"SERVER: {server}\r\n"
        f"ST: {st}\r\n"
        f"USN: {usn}::{st}\r\n"
        f"{extra}"
        "\r\n"
    ).encode()


def serve_ssdp(address, public, flood):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 1900))
    mreq = struct.pack("4s4s", socket.inet_aton("239.255.255.250"), socket.inet_aton(address))
    listener.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    local.bind((address, 0))
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind((public, 0))
    flooded = False
    while True:
        data, sender = listener.recvfrom(4096)
        lines = data.decode("latin-1").split("\r\n")
        if not lines[0].startswith("M-SEARCH"):
            continue
        st = next((l.split(":", 1)[1].strip() for l in lines if l.upper().startswith("ST:")), "")
        if st == "urn:schemas-upnp-org:device:ZonePlayer:1":
            local.sendto(ssdp_answer(f"http://{address}:1400/xml/device_description.xml", st,
                                     "uuid:RINCON_TEST000000001400",
                                     "Linux UPnP/1.0 Sonos/70.3-35220 (ZPS9)"), sender)
        if st == "urn:schemas-upnp-org:device:basic:1":
            far.sendto(ssdp_answer(f"http://{public}:80/description.xml", st,
                                   "uuid:2f402f80-da50-11e1-9b23-001788ffff01",
                                   "Hue/1.0 UPnP/1.0 IpBridge/1.65.0",
                                   "hue-bridgeid: 001788FFFEFF0001\r\n"), sender)
        if flood and not flooded:
            flooded = True
            for i in range(flood):
                local.sendto(ssdp_answer(f"http://{address}:{10000 + i}/d.xml",
                                         "urn:schemas-upnp-org:device:MediaRenderer:1",
                                         f"uuid:flood-{i}", "Flood/1.0 UPnP/1.0"), sender)
                if i % 10 == 9:
                    time.sleep(0.002)


class Device(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/xml/device_description.xml":
            body, kind = DESCRIPTION.encode(), "text/xml"
        elif self.path == "/api/":
            if not HA_TOKEN or self.headers.get("Authorization", "") != f"Bearer {HA_TOKEN}":
                self.send_error(401)
                return
            body, kind = b'{"message": "API running."}', "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve_http(address, port):
    server = http.server.ThreadingHTTPServer((address, port), Device)
    threading.Thread(target=server.serve_forever, daemon=True).start()


HA_TOKEN = ""


def main():
    global HA_TOKEN
    args = parse_args()
    HA_TOKEN = args.ha_token
    serve_http(args.address, 1400)
    serve_http(args.address, 8123)
    threading.Thread(target=serve_ssdp, args=(args.address, args.public, args.flood), daemon=True).start()
    zc = register_mdns(args.address, args.public)
    threading.Thread(target=announce_hostile, args=(args.address,), daemon=True).start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        zc.close()


if __name__ == "__main__":
    sys.exit(main())
