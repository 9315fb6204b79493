"""Exit codes of `ummc-gateway` and the one error type the commands raise.

A command that cannot go on raises ToolError with an exit code and a message
key (firmware/tool/i18n.py); cli.main prints the message in the chosen
language and exits with the code, so a script (or a workshop checklist)
knows what failed without reading the text. The table is in
docs/technician.md, "Exit codes"."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Exit(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug in the tool: the message says where
    USAGE = 2  # bad command line or answer
    DEVICE_NOT_FOUND = 3  # no board on the port, no virtual gateway directory
    FLASH_FAILED = 4  # esptool or the copy to the board failed
    VERIFY_FAILED = 5  # a file read back from the gateway does not match
    CONFIG_INVALID = 6  # the configuration (given or on the gateway) is wrong or missing
    BROKER_UNREACHABLE = 7  # no TCP connection to the broker, or it refused the login
    PAIRING_FAILED = 8  # instrument not found, PIN refused, pairing error
    BUNDLE_REFUSED = 9  # firmware bundle not signed by a trusted key, or damaged
    NEEDS_ATTENTION = 10  # doctor: other checks failed (crash, clock, journal, firmware)
    INTERRUPTED = 130  # Ctrl-C


class ToolError(Exception):
    """Stop the command: print message `key` (with `fields`) and exit `code`."""

    def __init__(self, code: Exit, key: str, **fields: Any) -> None:
        super().__init__(f"{key} {fields}")
        self.code = code
        self.key = key
        self.fields = fields
