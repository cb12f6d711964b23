"""An independent Python reading of Tollgate's affinity marks (see src/policy/affinity_mark.rs),
used by the tests to unmark what clients receive and to forge marks."""

import base64
import hashlib

BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def code(text):
    bits = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 12
    return "".join(BASE32[(bits >> (15 - 5 * i)) & 31] for i in range(4))


def tag_of(deployment_id, boundary_key):
    return code(deployment_id) + code(boundary_key)


def _checksum(original, tag8):
    digest = hashlib.sha256(original.encode() + tag8.encode()).digest()
    return BASE32[digest[0] & 31] + BASE32[digest[1] & 31]


def mark_id(original, tag8):
    prefix, rest = original.split("_", 1)
    head = f"{prefix}_tg{tag8}{_checksum(original, tag8)}"
    try:
        raw = bytes.fromhex(rest) if rest == rest.lower() and len(rest) % 2 == 0 else None
    except ValueError:
        raw = None
    if raw:
        return head + "h" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return head + "r" + rest


def unmark_id(marked):
    prefix, rest = marked.split("_", 1)
    if not rest.startswith("tg"):
        return marked, None
    tag8, body = rest[2:10], rest[12:]
    mode, payload = body[0], body[1:]
    if mode == "h":
        restored = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).hex()
    else:
        restored = payload
    return f"{prefix}_{restored}", tag8


def unmark_content(marked):
    if marked.startswith("tg") and marked[12:13] == ".":
        return marked[13:], marked[2:10]
    return marked, None
