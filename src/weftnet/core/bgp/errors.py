"""BGP error codes (RFC 4271 section 4.5 and the RFCs that extend it) and the :class:`Notify` exception.

A :class:`Notify` is raised by the codec when an input must end the session
(RFC 7606 "session reset"); the session turns it into a NOTIFICATION message
with exactly that code, subcode and data, then closes the connection.
"""

from __future__ import annotations

from weftnet.errors import DecodeError

__all__ = ["Notify", "MalformedAttribute", "ERROR_NAMES"]

# Codes (RFC 4271 4.5) with subcodes (6.1-6.6; RFC 4486 for Cease, RFC 6608 for FSM, RFC 7313 for refresh).
HEADER, OPEN, UPDATE, HOLD_EXPIRED, FSM, CEASE, REFRESH = 1, 2, 3, 4, 5, 6, 7
# header
CONN_NOT_SYNC, BAD_LENGTH, BAD_TYPE = 1, 2, 3
# open
UNSUPPORTED_VERSION, BAD_PEER_AS, BAD_BGP_ID, UNSUPPORTED_OPT_PARAM, UNACCEPTABLE_HOLD, UNSUPPORTED_CAPABILITY = 1, 2, 3, 4, 6, 7
# update
MALFORMED_ATTR_LIST, UNRECOGNIZED_WELL_KNOWN, MISSING_WELL_KNOWN, ATTR_FLAGS, ATTR_LENGTH = 1, 2, 3, 4, 5
INVALID_ORIGIN, INVALID_NEXT_HOP, OPTIONAL_ATTR, INVALID_NETWORK, MALFORMED_AS_PATH = 6, 8, 9, 10, 11
# fsm (RFC 6608)
FSM_UNSPECIFIED, FSM_IN_OPENSENT, FSM_IN_OPENCONFIRM, FSM_IN_ESTABLISHED = 0, 1, 2, 3
# cease (RFC 4486)
MAX_PREFIXES, ADMIN_SHUTDOWN, PEER_DECONFIGURED, ADMIN_RESET, CONNECTION_REJECTED = 1, 2, 3, 4, 5
OTHER_CONFIG_CHANGE, COLLISION_RESOLUTION, OUT_OF_RESOURCES = 6, 7, 8

ERROR_NAMES = {
    HEADER: ("Message Header Error", {CONN_NOT_SYNC: "Connection Not Synchronized", BAD_LENGTH: "Bad Message Length",
                                      BAD_TYPE: "Bad Message Type"}),
    OPEN: ("OPEN Message Error", {UNSUPPORTED_VERSION: "Unsupported Version Number", BAD_PEER_AS: "Bad Peer AS",
                                  BAD_BGP_ID: "Bad BGP Identifier", UNSUPPORTED_OPT_PARAM: "Unsupported Optional Parameter",
                                  UNACCEPTABLE_HOLD: "Unacceptable Hold Time",
                                  UNSUPPORTED_CAPABILITY: "Unsupported Capability"}),
    UPDATE: ("UPDATE Message Error", {MALFORMED_ATTR_LIST: "Malformed Attribute List",
                                      UNRECOGNIZED_WELL_KNOWN: "Unrecognized Well-known Attribute",
                                      MISSING_WELL_KNOWN: "Missing Well-known Attribute", ATTR_FLAGS: "Attribute Flags Error",
                                      ATTR_LENGTH: "Attribute Length Error", INVALID_ORIGIN: "Invalid ORIGIN Attribute",
                                      INVALID_NEXT_HOP: "Invalid NEXT_HOP Attribute", OPTIONAL_ATTR: "Optional Attribute Error",
                                      INVALID_NETWORK: "Invalid Network Field", MALFORMED_AS_PATH: "Malformed AS_PATH"}),
    HOLD_EXPIRED: ("Hold Timer Expired", {}),
    FSM: ("Finite State Machine Error", {FSM_IN_OPENSENT: "Unexpected Message in OpenSent",
                                         FSM_IN_OPENCONFIRM: "Unexpected Message in OpenConfirm",
                                         FSM_IN_ESTABLISHED: "Unexpected Message in Established"}),
    CEASE: ("Cease", {MAX_PREFIXES: "Maximum Number of Prefixes Reached", ADMIN_SHUTDOWN: "Administrative Shutdown",
                      PEER_DECONFIGURED: "Peer De-configured", ADMIN_RESET: "Administrative Reset",
                      CONNECTION_REJECTED: "Connection Rejected", OTHER_CONFIG_CHANGE: "Other Configuration Change",
                      COLLISION_RESOLUTION: "Connection Collision Resolution", OUT_OF_RESOURCES: "Out of Resources"}),
    REFRESH: ("ROUTE-REFRESH Message Error", {1: "Invalid Message Length"}),
}


def error_text(code: int, subcode: int) -> str:
    name, subs = ERROR_NAMES.get(code, (f"code {code}", {}))
    return f"{name} / {subs.get(subcode, f'subcode {subcode}')}"


class Notify(DecodeError):
    """The input must end the session with NOTIFICATION (code, subcode, data)."""

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = ""):
        self.code, self.subcode, self.data = code, subcode, bytes(data)
        super().__init__(f"{error_text(code, subcode)}" + (f": {reason}" if reason else ""))


class MalformedAttribute(ValueError):
    """A path attribute's value does not parse; the UPDATE parser decides what RFC 7606 makes of it."""
