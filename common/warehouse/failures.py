"""Which warehouse failures a retry can mend.

An insert the engine refuses because of what it asks for — a column or table that is not
there, a value the column's type cannot hold — fails the same way every time: retrying it
forever would hold its rows (and every later row of the table, which waits behind it) in
the write-ahead log until the log is full. Everything else may pass: the server
unreachable or timing out, Keeper lost (a replicated table is read-only), too many parts,
memory, a quorum not reached. Only the codes listed here count as permanent; an unknown
code is retried, so a misjudged failure costs time, never rows."""

from __future__ import annotations

from common.warehouse.base import WarehouseError

# ClickHouse's error codes (src/Common/ErrorCodes.cpp) for an insert that can never succeed
# as written: the statement names something the schema lacks, or the data does not fit it.
PERMANENT_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        8,  # THERE_IS_NO_COLUMN
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        15,  # DUPLICATE_COLUMN
        16,  # NO_SUCH_COLUMN_IN_TABLE
        25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        44,  # ILLEGAL_COLUMN
        47,  # UNKNOWN_IDENTIFIER
        53,  # TYPE_MISMATCH
        60,  # UNKNOWN_TABLE
        62,  # SYNTAX_ERROR
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        73,  # UNKNOWN_FORMAT
        81,  # UNKNOWN_DATABASE
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        376,  # CANNOT_PARSE_UUID
        467,  # CANNOT_PARSE_BOOL
    }
)


def permanent(error: BaseException) -> bool:
    """True when `error` is the engine refusing the statement itself: trying it again
    cannot succeed."""
    return isinstance(error, WarehouseError) and error.code in PERMANENT_CODES


def unreachable(error: BaseException) -> bool:
    """True when the engine never answered (connection refused or timed out, not open):
    the caller should hear UNAVAILABLE and try again, not that its request was wrong."""
    return isinstance(error, WarehouseError) and error.code is None
