"""A BRAS's side of MS-CHAPv2 towards liberad, written with pyrad (Debian's
python3-pyrad) for the packets and pycryptodome (python3-pycryptodome) for
MD4 and DES, for liberad's interoperability tests.

Usage: pyrad_mschap.py PORT SECRET USER PASSWORD

Sends one Access-Request for USER with MS-CHAP-Challenge and
MS-CHAP2-Response computed from PASSWORD (RFC 2759) to 127.0.0.1:PORT, and
prints one JSON line about the reply: its code, whether its authenticators
check out, whether MS-CHAP2-Success holds the authenticator response
expected from PASSWORD, whether MS-MPPE-Send-Key and MS-MPPE-Recv-Key
decrypt (RFC 2548) to the keys derived here (RFC 3079), the MPPE policy
and types, and the MS-CHAP-Error text.
"""

import hashlib
import hmac
import io
import json
import os
import socket
import struct
import sys

from Cryptodome.Cipher import DES
from Cryptodome.Hash import MD4
from pyrad import dictionary, packet

MICROSOFT = 311
MS_CHAP_ERROR = 2
MS_MPPE_ENCRYPTION_POLICY = 7
MS_MPPE_ENCRYPTION_TYPES = 8
MS_CHAP_CHALLENGE = 11
MS_MPPE_SEND_KEY = 16
MS_MPPE_RECV_KEY = 17
MS_CHAP2_RESPONSE = 25
MS_CHAP2_SUCCESS = 26
MESSAGE_AUTHENTICATOR = 80

DICTIONARY = "ATTRIBUTE User-Name 1 string\n"


def md4(data):
    return MD4.new(data).digest()


def sha1(*parts):
    return hashlib.sha1(b"".join(parts)).digest()


def expand_des_key(k):
    """Seven key bytes to eight, a parity bit (left clear) in each."""
    return bytes(
        [
            k[0] & 0xFE,
            ((k[0] << 7) | (k[1] >> 1)) & 0xFE,
            ((k[1] << 6) | (k[2] >> 2)) & 0xFE,
            ((k[2] << 5) | (k[3] >> 3)) & 0xFE,
            ((k[3] << 4) | (k[4] >> 4)) & 0xFE,
            ((k[4] << 3) | (k[5] >> 5)) & 0xFE,
            ((k[5] << 2) | (k[6] >> 6)) & 0xFE,
            (k[6] << 1) & 0xFE,
        ]
    )


def nt_response(auth_challenge, peer_challenge, user, password_hash):
    challenge = sha1(peer_challenge, auth_challenge, user)[:8]
    key = password_hash + bytes(5)
    return b"".join(
        DES.new(expand_des_key(key[i : i + 7]), DES.MODE_ECB).encrypt(challenge)
        for i in (0, 7, 14)
    )


def authenticator_response(password_hash, response, peer_challenge, auth_challenge, user):
    digest = sha1(md4(password_hash), response, b"Magic server to client signing constant")
    challenge = sha1(peer_challenge, auth_challenge, user)[:8]
    digest = sha1(digest, challenge, b"Pad to make it do more than one iteration")
    return "S=" + digest.hex().upper()


def server_keys(password_hash, response):
    master = sha1(md4(password_hash), response, b"This is the MPPE Master Key")[:16]

    def start_key(magic):
        return sha1(master, bytes(40), magic, b"\xf2" * 40)[:16]

    send = start_key(
        b"On the client side, this is the receive key; on the server side, it is the send key."
    )
    receive = start_key(
        b"On the client side, this is the send key; on the server side, it is the receive key."
    )
    return send, receive


def microsoft(typ, data):
    return struct.pack("!IBB", MICROSOFT, typ, len(data) + 2) + data


def attributes(raw):
    """(type, value) pairs of a whole packet."""
    out, offset = [], 20
    while offset + 2 <= len(raw):
        typ, length = raw[offset], raw[offset + 1]
        out.append((typ, raw[offset + 2 : offset + length]))
        offset += max(length, 2)
    return out


def vendor(raw, typ):
    for t, value in attributes(raw):
        if t == 26 and len(value) >= 6:
            vendor_id, sub, length = struct.unpack("!IBB", value[:6])
            if vendor_id == MICROSOFT and sub == typ:
                return value[6:length + 4]
    return None


def salt_decrypt(value, secret, request_authenticator):
    salt, cipher = value[:2], value[2:]
    plain, previous = b"", request_authenticator + salt
    for i in range(0, len(cipher), 16):
        block = cipher[i : i + 16]
        pad = hashlib.md5(secret + previous).digest()
        plain += bytes(c ^ p for c, p in zip(block, pad))
        previous = block
    return plain[1 : 1 + plain[0]]


def with_message_authenticator(raw, secret):
    """Fills the zeroed Message-Authenticator of a request."""
    offset = 20
    while offset < len(raw):
        typ, length = raw[offset], raw[offset + 1]
        if typ == MESSAGE_AUTHENTICATOR:
            mac = hmac.new(secret, raw, hashlib.md5).digest()
            return raw[: offset + 2] + mac + raw[offset + 18 :]
        offset += length
    raise ValueError("no Message-Authenticator")


def reply_authentic(raw, request_authenticator, secret):
    expected = hashlib.md5(raw[:4] + request_authenticator + raw[20:] + secret).digest()
    if raw[4:20] != expected:
        return False
    # Message-Authenticator, over the reply with the request's authenticator.
    offset = 20
    while offset < len(raw):
        typ, length = raw[offset], raw[offset + 1]
        if typ == MESSAGE_AUTHENTICATOR:
            zeroed = raw[:4] + request_authenticator + raw[20 : offset + 2] + bytes(16) + raw[offset + 18 :]
            return hmac.new(secret, zeroed, hashlib.md5).digest() == raw[offset + 2 : offset + 18]
        offset += length
    return False


def main():
    port, secret, user, password = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3], sys.argv[4]
    auth_challenge, peer_challenge = os.urandom(16), os.urandom(16)
    password_hash = md4(password.encode("utf-16-le"))
    response = nt_response(auth_challenge, peer_challenge, user.encode(), password_hash)
    ident = 0x17

    request = packet.AuthPacket(
        code=packet.AccessRequest,
        secret=secret,
        dict=dictionary.Dictionary(io.StringIO(DICTIONARY)),
    )
    request["User-Name"] = user
    request.AddAttribute(26, microsoft(MS_CHAP_CHALLENGE, auth_challenge))
    request.AddAttribute(
        26,
        microsoft(MS_CHAP2_RESPONSE, bytes([ident, 0]) + peer_challenge + bytes(8) + response),
    )
    request.AddAttribute(MESSAGE_AUTHENTICATOR, bytes(16))
    raw = with_message_authenticator(request.RequestPacket(), secret)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(10)
    sock.sendto(raw, ("127.0.0.1", port))
    reply, _ = sock.recvfrom(4096)
    authenticator = raw[4:20]

    send, receive = server_keys(password_hash, response)
    success = vendor(reply, MS_CHAP2_SUCCESS)
    send_key = vendor(reply, MS_MPPE_SEND_KEY)
    recv_key = vendor(reply, MS_MPPE_RECV_KEY)
    policy = vendor(reply, MS_MPPE_ENCRYPTION_POLICY)
    types = vendor(reply, MS_MPPE_ENCRYPTION_TYPES)
    error = vendor(reply, MS_CHAP_ERROR)
    expected = authenticator_response(
        password_hash, response, peer_challenge, auth_challenge, user.encode()
    )
    report = {
        "code": reply[0],
        "same_id": reply[1] == raw[1],
        "authentic": reply_authentic(reply, authenticator, secret),
        "success_ok": None if success is None else success == bytes([ident]) + expected.encode(),
        "send_key_ok": None if send_key is None else salt_decrypt(send_key, secret, authenticator) == send,
        "recv_key_ok": None if recv_key is None else salt_decrypt(recv_key, secret, authenticator) == receive,
        "policy": None if policy is None else struct.unpack("!I", policy)[0],
        "types": None if types is None else struct.unpack("!I", types)[0],
        "error": None if error is None else {"ident": error[0], "text": error[1:].decode()},
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
