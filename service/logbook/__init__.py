"""The session logbook: every run in one SQLite file (docs/logbook.md).

One module per reason to change:

* ``codec``: the raw-sample blob (``encode_chunk``/``decode_chunk``);
* ``schema``: the file itself: ``connect`` (WAL, ``synchronous=FULL``, a private file), the tables and
  their migrations (``MIGRATIONS``, ``SCHEMA_VERSION``), ``explain`` for a file that cannot be written;
* ``book``: ``Logbook``, reading and looking after the file (sessions, strides, events, raw blocks, notes,
  delete, vacuum);
* ``writer``: ``LogbookSink``, the daemon's live writer thread (batches, a commit at least once a second,
  a full disk survived);
* ``outbox``: ``LogbookOutbox``, the MQTT publisher's durable outbox in the ``alerts`` table.

Import from here (``from stackcue.service.logbook import Logbook``); the submodules are the layout, not the API.
"""

from stackcue.errors import LogbookError

from .book import Logbook
from .codec import decode_chunk, encode_chunk
from .outbox import LogbookOutbox
from .schema import BUSY_TIMEOUT_MS, MIGRATIONS, SCHEMA_VERSION, connect, explain
from .writer import FLUSH_S, LogbookSink

__all__ = [
    "BUSY_TIMEOUT_MS",
    "FLUSH_S",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Logbook",
    "LogbookError",
    "LogbookOutbox",
    "LogbookSink",
    "connect",
    "decode_chunk",
    "encode_chunk",
    "explain",
]
