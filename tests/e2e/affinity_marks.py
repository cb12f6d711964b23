"""An independent Python reading of Tollgate's affinity marks (see src/core/affinity/mark.rs),
used by the tests to unmark what clients receive and to forge marks. A mark is
`ts` + deployment code (4) + boundary code (4) + checksum (2) + tenant seal (8): the seal is
HMAC-SHA256 under a per-tenant key derived from the operator's secret, so the tests, which know
the secret, can seal for a tenant as the gateway does, and an attacker cannot."""

import base64
import hashlib
import hmac

from policies import UPSTREAM_ENV
from stack import key_hash

SECRET = UPSTREAM_ENV["TOLLGATE_AFFINITY_SECRET"].encode()

BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def code(text):
    bits = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 12
    return "".join(BASE32[(bits >> (15 - 5 * i)) & 31] for i in range(4))


def tag_of(deployment_id, boundary_key):
    return code(deployment_id) + code(boundary_key)


def _checksum(original, tag8):
    digest = hashlib.sha256(original.encode() + tag8.encode()).digest()
    return BASE32[digest[0] & 31] + BASE32[digest[1] & 31]


def tenant_of(team_id=None, key=None):
    """The tenant a mark is sealed to: the key's team, else the key itself."""
    return f"team:{team_id}" if team_id else f"key:{key_hash(key)}"


def _seal(original, tag8, tenant):
    tenant_key = hmac.new(SECRET, b"tollgate/affinity-tenant/v1\0" + tenant.encode(), hashlib.sha256).digest()
    mac = hmac.new(tenant_key, original.encode() + tag8.encode(), hashlib.sha256).digest()
    bits = int.from_bytes(mac[:5], "big")
    return "".join(BASE32[(bits >> (35 - 5 * i)) & 31] for i in range(8))


def mark_id(original, tag8, tenant):
    prefix, rest = original.split("_", 1)
    head = f"{prefix}_ts{tag8}{_checksum(original, tag8)}{_seal(original, tag8, tenant)}"
    try:
        raw = bytes.fromhex(rest) if rest == rest.lower() and len(rest) % 2 == 0 else None
    except ValueError:
        raw = None
    if raw:
        return head + "h" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return head + "r" + rest


def unmark_id(marked):
    prefix, rest = marked.split("_", 1)
    if not rest.startswith("ts"):
        return marked, None
    tag8, body = rest[2:10], rest[20:]
    mode, payload = body[0], body[1:]
    if mode == "h":
        restored = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).hex()
    else:
        restored = payload
    return f"{prefix}_{restored}", tag8


def unmark_content(marked):
    if marked.startswith("ts") and marked[20:21] == ".":
        return marked[21:], marked[2:10]
    return marked, None
