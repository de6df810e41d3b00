"""Every IP packet that arrives on an interface, by destination: a packet counter for
tests/discover.rs, run inside the responder's namespace on its end of the veth pair, which
is the only link the discovering namespace has. Uses a Linux packet socket (AF_PACKET), so
needs no capture tool; reads the Ethernet, IPv4/IPv6 and UDP/TCP headers by their fixed
layouts (RFC 791, RFC 8200; extension headers are not followed and reported as such).

Usage: capture.py IFACE SOURCE_MAC OUT_FILE. Writes one line per packet whose Ethernet source
is SOURCE_MAC ("proto dst_ip dst_port") to OUT_FILE, flushed as it goes; prints "ready" once
the socket is open.
"""

import socket
import struct
import sys

ETH_P_ALL = 0x0003


def main():
    iface, source_mac, out_file = sys.argv[1], sys.argv[2].lower(), sys.argv[3]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    print("ready", flush=True)
    with open(out_file, "a") as out:
        while True:
            frame, info = s.recvfrom(65535)
            if info[2] == socket.PACKET_OUTGOING or len(frame) < 14:
                continue
            src = ":".join(f"{b:02x}" for b in frame[6:12])
            if src != source_mac:
                continue
            ethertype = struct.unpack("!H", frame[12:14])[0]
            ip = frame[14:]
            if ethertype == 0x0800 and len(ip) >= 20:
                ihl = (ip[0] & 0x0F) * 4
                proto, dst = ip[9], socket.inet_ntop(socket.AF_INET, ip[16:20])
                payload = ip[ihl:]
            elif ethertype == 0x86DD and len(ip) >= 40:
                proto, dst = ip[6], socket.inet_ntop(socket.AF_INET6, ip[24:40])
                payload = ip[40:]
            else:
                continue
            name = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 58: "icmpv6"}.get(proto, f"proto{proto}")
            port = struct.unpack("!H", payload[2:4])[0] if proto in (6, 17) and len(payload) >= 4 else 0
            out.write(f"{name} {dst} {port}\n")
            out.flush()


if __name__ == "__main__":
    sys.exit(main())
