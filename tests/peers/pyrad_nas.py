"""A NAS's CoA / Disconnect port, written with pyrad (Debian's python3-pyrad),
for liberad's interoperability tests.

Usage: pyrad_nas.py DICTIONARY SECRET

Listens on 127.0.0.1 (port chosen by the system, printed first as
{"port": N}), accepts requests from 127.0.0.1 with SECRET, prints each one
as a JSON line ({"kind": "coa"|"disconnect", "authentic": bool,
"attributes": {...}}) and answers it with an ACK.
"""

import json
import sys

from pyrad import dictionary, packet, server


class Nas(server.Server):
    def HandleCoaPacket(self, pkt):
        self.answer(pkt, "coa", packet.CoAACK)

    def HandleDisconnectPacket(self, pkt):
        self.answer(pkt, "disconnect", packet.DisconnectACK)

    def answer(self, pkt, kind, code):
        attributes = {name: [str(value) for value in pkt[name]] for name in pkt.keys()}
        report = {
            "kind": kind,
            "authentic": bool(pkt.VerifyCoARequest()),
            "attributes": attributes,
        }
        print(json.dumps(report), flush=True)
        reply = self.CreateReplyPacket(pkt)
        reply.code = code
        self.SendReplyPacket(pkt.fd, reply)


def main():
    dictionary_path, secret = sys.argv[1], sys.argv[2]
    nas = Nas(
        dict=dictionary.Dictionary(dictionary_path),
        coaport=0,
        auth_enabled=False,
        acct_enabled=False,
        coa_enabled=True,
    )
    nas.hosts["127.0.0.1"] = server.RemoteHost("127.0.0.1", secret.encode(), "liberad")
    nas.BindToAddress("127.0.0.1")
    # pyrad 2.1 looks these up even when authentication and accounting
    # are disabled.
    nas._realauthfds = []
    nas._realacctfds = []
    print(json.dumps({"port": nas.coafds[0].getsockname()[1]}), flush=True)
    nas.Run()


if __name__ == "__main__":
    main()
